/**
 * Opening the span that performs one transition. Each span writes exactly one event and the
 * event's headers carry that span's context, its parent span id and its start (DESIGN §2).
 *
 * Span ids must exist even when nothing is exported: with no SDK registered the OpenTelemetry API
 * hands out non-recording spans that reuse the parent's ids, which would make every event of a
 * task claim the same span. So when the global provider is the API's no-op, spans get ids of their
 * own here — a new span id on the parent's trace (a new trace for a root), the parent's flags — and
 * are otherwise non-recording: no sampler, no attributes built, nothing exported. That is what a
 * parent-based sampler with root always off would decide, at a fraction of the cost per transition.
 */
import { ProxyTracerProvider, TraceFlags, context, trace, type Attributes, type Context, type HrTime, type Span, type Tracer, type TracerProvider } from "@opentelemetry/api"
import { isTracingSuppressed } from "@opentelemetry/core"
import { randomFillSync } from "node:crypto"
import type { EventTrace } from "../domain/events.js"
import { eventTraceOf, hrWallClock, spanStartNow } from "./codec.js"
import { spanSinkOf, startRecordedSpan } from "./transitionSpan.js"

/**
 * Random bytes for ids, drawn from the OS in 4 KiB refills and handed out 8 or 16 at a time as
 * hex. Built a character at a time from Math.random, an id cost ~50 string pieces — a tenth of
 * everything a create allocated (sampled allocation profile of the producer).
 */
const POOL = Buffer.allocUnsafe(4096)
let poolAt = POOL.length
const ALL_ZERO = /^0+$/

/** `length` random hex digits (even), never all zeros (an invalid id). */
const randomHex = (length: number): string => {
  const bytes = length / 2
  if (poolAt + bytes > POOL.length) {
    randomFillSync(POOL)
    poolAt = 0
  }
  const out = POOL.toString("hex", poolAt, poolAt + bytes)
  poolAt += bytes
  return ALL_ZERO.test(out) ? randomHex(length) : out
}

/** A non-recording span with ids of its own: the parent's trace and flags, a new span id. */
const idOnlySpan = (parent: Context | undefined): Span => {
  const parentCtx = parent === undefined ? undefined : trace.getSpanContext(parent)
  return trace.wrapSpanContext({
    traceId: parentCtx?.traceId ?? randomHex(32),
    spanId: randomHex(16),
    traceFlags: parentCtx?.traceFlags ?? TraceFlags.NONE,
    ...(parentCtx?.traceState !== undefined ? { traceState: parentCtx.traceState } : {})
  })
}

const idOnlyTracer: Tracer = {
  startSpan: (_name, _options, parent) => idOnlySpan(parent ?? context.active()),
  startActiveSpan: ((_name: string, ...rest: Array<unknown>) => {
    const fn = rest[rest.length - 1] as (span: Span) => unknown
    const parent = rest.length === 3 ? (rest[1] as Context) : context.active()
    const span = idOnlySpan(parent)
    return context.with(trace.setSpan(parent, span), () => fn(span))
  }) as Tracer["startActiveSpan"]
}

/** Spans with ids and nothing else, for when no provider is registered (tracing disabled). */
export const ID_ONLY_PROVIDER: TracerProvider = { getTracer: () => idOnlyTracer }

/** The provider spans come from: the given one, the registered global one, or the id-only one. */
export const resolveProvider = (provider?: TracerProvider): TracerProvider => {
  if (provider !== undefined) return provider
  const global = trace.getTracerProvider()
  if (global instanceof ProxyTracerProvider && global.getDelegateTracer("codeq") === undefined) return ID_ONLY_PROVIDER
  return global
}

/** Tracers by name, resolved once per Telemetry. */
export class Telemetry {
  private readonly provider: TracerProvider
  private readonly tracers = new Map<string, Tracer>()

  constructor(provider?: TracerProvider) {
    this.provider = resolveProvider(provider)
  }

  tracer(name: string): Tracer {
    let tracer = this.tracers.get(name)
    if (tracer === undefined) {
      tracer = this.provider.getTracer(name)
      this.tracers.set(name, tracer)
    }
    return tracer
  }

  /**
   * Opens a span for one transition, parented on `parent`, and the trace its event will carry.
   * `attributes` may be a function: it is only called when the span is recorded — on codeq's own
   * provider when the span first needs them, at the latest as it is exported — and what it returns
   * is taken as made for this span (kept, not copied), so it must build them from values that do
   * not change.
   */
  startTransition(tracerName: string, spanName: string, parent: Context, attributes: Attributes | (() => Attributes), baggage?: string): TransitionSpan {
    const start = spanStartNow()
    const parentCtx = trace.getSpanContext(parent)
    const span = this.startSpan(tracerName, spanName, parent, attributes, start.hr)
    return { span, context: trace.setSpan(parent, span), trace: eventTraceOf(span.spanContext(), parentCtx, start, baggage) }
  }

  /**
   * Opens a span parented on `parent` (a transition's, or one no event carries), recorded by
   * codeq when the provider is codeq's own, else by the provider's tracer. Without `startTime` the
   * span keeps its own clock, so that ending it without a time cannot put its end before its start
   * (the SDK ends a span whose start was given at whole milliseconds). Attributes from a function
   * are taken as made for this span, as in `startTransition`.
   */
  startSpan(tracerName: string, spanName: string, parent: Context, attributes: Attributes | (() => Attributes), startTime?: HrTime): Span {
    // Nothing is recorded with the id-only provider: the attributes are not even built.
    if (this.provider === ID_ONLY_PROVIDER) return idOnlySpan(parent)
    // codeq's own provider: the span is recorded without the SDK's Tracer (transitionSpan.ts),
    // and attributes from a function are built when the span needs them.
    const sink = spanSinkOf(this.provider)
    if (sink !== undefined && !isTracingSuppressed(parent)) return startRecordedSpan(sink, tracerName, spanName, parent, attributes, startTime ?? hrWallClock(), randomHex)
    const built = typeof attributes === "function" ? attributes() : attributes
    return this.tracer(tracerName).startSpan(spanName, startTime === undefined ? { attributes: built } : { attributes: built, startTime }, parent)
  }
}

/** Now as OpenTelemetry HrTime at full precision: the end of a span whose start was given. */
export const hrNow = (): [number, number] => spanStartNow().hr

export interface TransitionSpan {
  readonly span: Span
  /** `parent` with this span set: the parent for work the transition causes. */
  readonly context: Context
  /** The trace headers of the event this span writes. */
  readonly trace: EventTrace
}
