/**
 * The recorded span of one transition, made without the SDK's Tracer and Span when the provider
 * is the one codeq set up. What the SDK does per span — sanitizing the attributes for the sampler,
 * then validating each again as the span takes it, span limits, metrics hooks — cost ~8.7 µs a
 * span in a worker, four spans a task (a CPU profile of the bench's `tracing` variant).
 * Transitions carry a dozen well-formed `codeq.*` attributes; here they are sampled by the
 * provider's own sampler (the same decision, the same trace state) and the ended span goes to the
 * provider's own span queue, as a ReadableSpan the exporter cannot tell from the SDK's
 * (test/transition-span.unit.test.ts compares them). Anything else — a provider that is not
 * codeq's, a suppressed context — goes through the SDK as before.
 */
import {
  ProxyTracerProvider,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  SamplingDecision,
  trace,
  type Attributes,
  type AttributeValue,
  type Context,
  type Exception,
  type HrTime,
  type Link,
  type Span,
  type SpanContext,
  type SpanStatus,
  type TimeInput,
  type TracerProvider
} from "@opentelemetry/api"
import { hrTimeDuration, isTimeInput, timeInputToHrTime, type InstrumentationScope } from "@opentelemetry/core"
import type { Resource } from "@opentelemetry/resources"
import { ATTR_EXCEPTION_MESSAGE, ATTR_EXCEPTION_STACKTRACE, ATTR_EXCEPTION_TYPE } from "@opentelemetry/semantic-conventions"
import type { ReadableSpan, Sampler, SamplingResult, SpanProcessor, TimedEvent } from "@opentelemetry/sdk-trace-base"
import { hrWallClock } from "./codec.js"

/** Where codeq's own provider records spans: its sampler, resource and span queue. */
export interface SpanSinkParts {
  readonly sampler: Sampler
  readonly resource: Resource
  readonly processor: SpanProcessor
  /**
   * The sampler is a `ParentBasedSampler` with its default delegates for parents (setupTracing's):
   * a child of a valid parent is sampled exactly when the parent is, with no trace state or
   * attributes of its own. Such a child is then decided here without asking the sampler, which
   * would check the parent's ids again (three of every task's four spans are children).
   */
  readonly followsParent?: boolean
  /**
   * The sampler decides without reading the span's attributes (setupTracing's: a root by its trace
   * id alone), so attributes still to be built are not built for it.
   */
  readonly samplerIgnoresAttributes?: boolean
}

export interface SpanSink extends SpanSinkParts {
  /**
   * The scope object of the provider's own tracer `name`, so that the SDK's spans and recorded
   * ones of one tracer group under one scope in an export request.
   */
  scope(name: string): InstrumentationScope
}

const sinks = new WeakMap<TracerProvider, SpanSink>()

/** Marks `provider` as codeq's, recording through its sampler, resource and span queue. */
export const registerSpanSink = (provider: TracerProvider, parts: SpanSinkParts): void => {
  const scopes = new Map<string, InstrumentationScope>()
  const scope = (name: string): InstrumentationScope => {
    let found = scopes.get(name)
    if (found === undefined) {
      const tracer = provider.getTracer(name) as { readonly instrumentationScope?: InstrumentationScope }
      scopes.set(name, (found = tracer.instrumentationScope ?? { name }))
    }
    return found
  }
  sinks.set(provider, { ...parts, scope })
}

/** The sink of `provider`, or of the provider a global proxy delegates to now; undefined if not codeq's. */
export const spanSinkOf = (provider: TracerProvider): SpanSink | undefined =>
  sinks.get(provider instanceof ProxyTracerProvider ? provider.getDelegate() : provider)

/** The SDK's default span limits: 128 attributes, events and links. */
const LIMIT = 128

/** What the SDK's span keeps: a named attribute with a value (null and undefined are not values). */
const keeps = (key: string, value: AttributeValue | undefined): boolean => key.length > 0 && value !== undefined && value !== null

const hrTimeOf = (time: TimeInput | undefined): HrTime => (time === undefined ? hrWallClock() : timeInputToHrTime(time))

/**
 * What a span has until it is given more: shared, never changed (a span replaces them before it
 * adds a link or an event, or ends). A transition's span lives as long as its append waits for
 * the server, under load long enough to outlive a young-generation collection: the span, its
 * times and attributes were ~1.4 KB a task of what a worker's objects that outlived one took,
 * with tracing on (a sampling heap profile, the bench's `tracing` variant). Fewer objects per
 * span are fewer to copy.
 */
const NO_LINKS: Link[] = Object.freeze([]) as unknown as Link[]
const NO_EVENTS: TimedEvent[] = Object.freeze([]) as unknown as TimedEvent[]
const UNSET: SpanStatus = Object.freeze({ code: SpanStatusCode.UNSET })
const NOT_ENDED: HrTime = Object.freeze([0, 0]) as unknown as HrTime
const NO_DURATION: HrTime = Object.freeze([-1, -1]) as unknown as HrTime
const NO_ATTRIBUTES: Attributes = Object.freeze({})

export class RecordedSpan implements Span, ReadableSpan {
  readonly kind = SpanKind.INTERNAL
  links: Link[] = NO_LINKS
  events: TimedEvent[] = NO_EVENTS
  status: SpanStatus = UNSET
  endTime: HrTime = NOT_ENDED
  ended = false
  droppedAttributesCount = 0
  droppedEventsCount = 0
  droppedLinksCount = 0
  private count = 0
  private kept: Attributes = NO_ATTRIBUTES
  /** What builds the attributes, until they are first needed. */
  private later: (() => Attributes) | undefined

  /**
   * `attributes` given as a function are built when first needed — at the latest as the ended
   * span is exported — and kept as built (they are the span's own); given as an object, they are
   * copied. WHY later: a transition's span lives as long as its append waits for the server, under
   * load longer than a young-generation collection; attributes built at its end are not copied
   * with it.
   */
  constructor(
    public name: string,
    private readonly context: SpanContext,
    readonly parentSpanContext: SpanContext | undefined,
    readonly startTime: HrTime,
    attributes: Attributes | (() => Attributes),
    readonly resource: Resource,
    readonly instrumentationScope: InstrumentationScope,
    private readonly processor: SpanProcessor
  ) {
    if (typeof attributes === "function") this.later = attributes
    else this.take(attributes, false)
  }

  get attributes(): Attributes {
    return this.built()
  }

  /** The attributes, built now if they were given as a function and not built yet. */
  private built(): Attributes {
    const later = this.later
    if (later !== undefined) {
      this.later = undefined
      this.take(later(), true)
    }
    return this.kept
  }

  /** Takes `attributes` on a span without any: whole when the span keeps every one (as is when `owned`), else one by one. */
  private take(attributes: Attributes, owned: boolean): void {
    const keys = Object.keys(attributes)
    if (keys.length <= LIMIT && keys.every((key) => keeps(key, attributes[key]))) {
      this.kept = owned ? attributes : { ...attributes }
      this.count = keys.length
      return
    }
    // Also when built after the span ended: they are the ones it was started with.
    this.kept = {}
    for (const key of keys) this.put(key, attributes[key])
  }

  /** As the SDK's: [-1, -1] until the span ends. Computed when read: nothing codeq exports reads it. */
  get duration(): HrTime {
    return this.ended ? hrTimeDuration(this.startTime, this.endTime) : NO_DURATION
  }

  spanContext(): SpanContext {
    return this.context
  }

  setAttribute(key: string, value: AttributeValue | undefined): this {
    if (this.ended) return this
    // Built first, if they are still to be: this one is set on top of them.
    this.built()
    this.put(key, value)
    return this
  }

  /** One attribute as the SDK's span takes it: a value, under a name, within the limit (the rest counted). */
  private put(key: string, value: AttributeValue | undefined): void {
    if (!keeps(key, value)) return
    if (this.kept[key] === undefined) {
      if (this.count >= LIMIT) {
        this.droppedAttributesCount++
        return
      }
      this.count++
    }
    this.kept[key] = value
  }

  /**
   * On a span without attributes yet (as every span starts), copied whole when setAttribute would
   * keep every one of them (each `keeps`, at most LIMIT): one builtin
   * where a keyed store per attribute was ~5 % of what tracing adds in a worker (profiled).
   * Otherwise one by one through setAttribute.
   */
  setAttributes(attributes: Attributes): this {
    if (this.ended) return this
    // Built first, if they are still to be: these are set on top of them.
    this.built()
    if (this.count === 0) this.take(attributes, false)
    else for (const key of Object.keys(attributes)) this.put(key, attributes[key])
    return this
  }

  addEvent(name: string, attributesOrTime?: Attributes | TimeInput, time?: TimeInput): this {
    if (this.ended) return this
    if (this.events === NO_EVENTS) this.events = []
    if (this.events.length >= LIMIT) {
      this.droppedEventsCount++
      this.events.shift()
    }
    const isTime = isTimeInput(attributesOrTime)
    const attributes = isTime ? {} : ((attributesOrTime as Attributes | undefined) ?? {})
    this.events.push({ name, attributes, time: hrTimeOf(isTime ? attributesOrTime : time), droppedAttributesCount: 0 })
    return this
  }

  addLink(link: Link): this {
    if (this.ended) return this
    if (this.links.length >= LIMIT) this.droppedLinksCount++
    else {
      if (this.links === NO_LINKS) this.links = []
      this.links.push(link)
    }
    return this
  }

  addLinks(links: Link[]): this {
    for (const link of links) this.addLink(link)
    return this
  }

  setStatus(status: SpanStatus): this {
    // As the SDK: UNSET changes nothing, OK is final, a message is kept only for ERROR.
    if (this.ended || status.code === SpanStatusCode.UNSET || this.status.code === SpanStatusCode.OK) return this
    this.status = status.code === SpanStatusCode.ERROR && typeof status.message === "string" ? { code: status.code, message: status.message } : { code: status.code }
    return this
  }

  updateName(name: string): this {
    if (!this.ended) this.name = name
    return this
  }

  end(endTime?: TimeInput): void {
    if (this.ended) return
    const end = hrTimeOf(endTime)
    // Never before the start (the SDK's span clamps it the same way).
    this.endTime = end[0] < this.startTime[0] || (end[0] === this.startTime[0] && end[1] < this.startTime[1]) ? [this.startTime[0], this.startTime[1]] : end
    this.ended = true
    this.processor.onEnd(this)
  }

  isRecording(): boolean {
    return !this.ended
  }

  /** As the SDK's: the code before the name as the type, and no event without a type or a message. */
  recordException(exception: Exception, time?: TimeInput): void {
    const attributes: Attributes = {}
    if (typeof exception === "string") attributes[ATTR_EXCEPTION_MESSAGE] = exception
    else if (exception) {
      if (exception.code) attributes[ATTR_EXCEPTION_TYPE] = exception.code.toString()
      else if (exception.name) attributes[ATTR_EXCEPTION_TYPE] = exception.name
      if (exception.message) attributes[ATTR_EXCEPTION_MESSAGE] = exception.message
      if (exception.stack) attributes[ATTR_EXCEPTION_STACKTRACE] = exception.stack
    }
    if (attributes[ATTR_EXCEPTION_TYPE] !== undefined || attributes[ATTR_EXCEPTION_MESSAGE] !== undefined) this.addEvent("exception", attributes, time)
  }
}

/** What the parent-based sampler's default delegates answer for a child (`followsParent`). */
const FOLLOW_SAMPLED: SamplingResult = { decision: SamplingDecision.RECORD_AND_SAMPLED }
const FOLLOW_NOT_SAMPLED: SamplingResult = { decision: SamplingDecision.NOT_RECORD }

/**
 * Starts the span of a transition through `sink` as the SDK's Tracer would: a child of the valid
 * span in `parent` (its trace and trace state) or a new trace, sampled by the sink's sampler, a
 * non-recording span with the new ids when the sampler says so.
 */
export const startRecordedSpan = (
  sink: SpanSink,
  tracerName: string,
  name: string,
  parent: Context,
  attributes: Attributes | (() => Attributes),
  startTime: HrTime,
  newId: (hexDigits: number) => string
): Span => {
  const parentCtx = trace.getSpanContext(parent)
  const valid = parentCtx !== undefined && trace.isSpanContextValid(parentCtx)
  const traceId = valid ? parentCtx.traceId : newId(32)
  const spanId = newId(16)
  const follows = valid && sink.followsParent === true
  // A sampler that reads the attributes is given them: they are built now.
  const given = !follows && typeof attributes === "function" && sink.samplerIgnoresAttributes !== true ? attributes() : attributes
  const result: SamplingResult = follows
    ? (parentCtx.traceFlags & TraceFlags.SAMPLED) !== 0
      ? FOLLOW_SAMPLED
      : FOLLOW_NOT_SAMPLED
    : sink.sampler.shouldSample(parent, traceId, name, SpanKind.INTERNAL, typeof given === "function" ? NO_ATTRIBUTES : given, [])
  const traceState = result.traceState ?? (valid ? parentCtx.traceState : undefined)
  const context: SpanContext = {
    traceId,
    spanId,
    traceFlags: result.decision === SamplingDecision.RECORD_AND_SAMPLED ? TraceFlags.SAMPLED : TraceFlags.NONE,
    ...(traceState !== undefined ? { traceState } : {})
  }
  if (result.decision === SamplingDecision.NOT_RECORD) return trace.wrapSpanContext(context)
  // The sampler's own attributes join the span's (only a sampler that was asked has any).
  const extra = result.attributes
  const all = extra === undefined ? given : () => ({ ...(typeof given === "function" ? given() : given), ...extra })
  const span = new RecordedSpan(name, context, valid ? parentCtx : undefined, startTime, all, sink.resource, sink.scope(tracerName), sink.processor)
  sink.processor.onStart(span, parent)
  return span
}
