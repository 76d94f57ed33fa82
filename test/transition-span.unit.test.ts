/**
 * Transition spans recorded without the SDK's Tracer (src/tracing/transitionSpan.ts): for every
 * sampling case, what reaches the span queue is what the SDK's Tracer and Span would have made.
 */
import { ROOT_CONTEXT, SpanStatusCode, TraceFlags, trace, type Attributes, type Context, type Span } from "@opentelemetry/api"
import { TraceState, suppressTracing } from "@opentelemetry/core"
import { resourceFromAttributes } from "@opentelemetry/resources"
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  ParentBasedSampler,
  SamplingDecision,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
  type ReadableSpan,
  type Sampler
} from "@opentelemetry/sdk-trace-base"
import { describe, expect, it } from "vitest"
import { Telemetry } from "../src/tracing/spans.js"
import { RecordedSpan, registerSpanSink } from "../src/tracing/transitionSpan.js"
import { eventDestination } from "../src/tracing/transitions.js"

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
const remoteParent = (flags: number): Context =>
  trace.setSpanContext(ROOT_CONTEXT, { traceId: TRACE_ID, spanId: "00f067aa0ba902b7", traceFlags: flags, isRemote: true, traceState: new TraceState("v=1") })

const ATTRIBUTES: Attributes = { "codeq.tenant_id": "t", "codeq.task_id": "task-1", "codeq.priority": 5, "codeq.has_webhook": false, ratio: 0.5 }
const START: [number, number] = [1_790_000_000, 123_456_789]
/** Later than any start taken from the clock in these tests. */
const END: [number, number] = [4_000_000_000, 987_654_321]

/** A provider like setupTracing's (ParentBased(TraceIdRatioBased(ratio))), its spans kept in memory; codeq's when `register`. */
const providerAt = (ratio: number, register: boolean) => {
  const exporter = new InMemorySpanExporter()
  const processor = new SimpleSpanProcessor(exporter)
  const resource = resourceFromAttributes({ "service.name": "test" })
  const sampler = new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) })
  const provider = new BasicTracerProvider({ resource, sampler, spanProcessors: [processor] })
  // As setupTracing registers it: children follow their parent without asking the sampler.
  if (register) registerSpanSink(provider, { sampler, resource, processor, followsParent: true, samplerIgnoresAttributes: true })
  return { provider, exported: (): Array<ReadableSpan> => exporter.getFinishedSpans() }
}

/** Everything an exporter reads from a span, but its own span id. */
const shape = (span: ReadableSpan) => ({
  name: span.name,
  kind: span.kind,
  traceId: span.spanContext().traceId,
  traceFlags: span.spanContext().traceFlags,
  traceState: span.spanContext().traceState?.serialize(),
  parent: span.parentSpanContext,
  attributes: span.attributes,
  status: span.status,
  startTime: span.startTime,
  endTime: span.endTime,
  duration: span.duration,
  events: span.events,
  links: span.links,
  dropped: [span.droppedAttributesCount, span.droppedEventsCount, span.droppedLinksCount],
  resource: span.resource,
  scope: span.instrumentationScope,
  ended: span.ended
})

/** The same transition through Telemetry (recorded by codeq when the provider is codeq's) and through the SDK's Tracer. */
const both = (ratio: number, parent: Context, finish: (span: Span) => void = (span) => span.end(END), attributes: Attributes = ATTRIBUTES) => {
  const { provider, exported } = providerAt(ratio, true)
  const ours = new Telemetry(provider).startTransition("codeq.repository", "codeq.task.claim", parent, () => ({ ...attributes })).span
  // The same start: Telemetry takes it from the clock.
  const startTime = ours instanceof RecordedSpan ? ours.startTime : START
  const sdk = provider.getTracer("codeq.repository").startSpan("codeq.task.claim", { attributes: { ...attributes }, startTime }, parent)
  finish(ours)
  finish(sdk)
  return { ours, sdk, exported: exported() }
}

describe("a transition span on codeq's provider", () => {
  it("under a sampled parent: recorded by codeq, and exported as the SDK's span would be", () => {
    const { ours, sdk, exported } = both(1, remoteParent(TraceFlags.SAMPLED), (span) => {
      span.setAttribute("codeq.worker_id", "w-1")
      span.setStatus({ code: SpanStatusCode.ERROR, message: "task failed" })
      span.end(END)
    })
    expect(ours).toBeInstanceOf(RecordedSpan)
    expect(exported).toHaveLength(2)
    const [recorded, made] = exported as [ReadableSpan, ReadableSpan]
    expect(shape(recorded)).toEqual(shape(made))
    expect(recorded.instrumentationScope).toBe(made.instrumentationScope)
    expect(recorded.resource).toBe(made.resource)
    expect(ours.spanContext().spanId).not.toBe(sdk.spanContext().spanId)
  })

  it("records exceptions as the SDK's span does: a code before the name, nothing without a type or a message", () => {
    const coded = Object.assign(new Error("no responders"), { code: "503" })
    const { ours, exported } = both(1, remoteParent(TraceFlags.SAMPLED), (span) => {
      span.recordException(coded, END)
      span.recordException({ name: "TypeError" }, END)
      span.recordException("as a string", END)
      span.recordException({ code: 0 }, END)
      span.end(END)
    })
    expect(ours).toBeInstanceOf(RecordedSpan)
    const [recorded, made] = exported as [ReadableSpan, ReadableSpan]
    expect(made.events.map((event) => event.attributes?.["exception.type"] ?? event.attributes?.["exception.message"])).toEqual(["503", "TypeError", "as a string"])
    expect(shape(recorded)).toEqual(shape(made))
  })

  it("starts with the attributes the SDK's span keeps: none empty or unset, at most 128, the rest counted as dropped", () => {
    const many: Attributes = Object.fromEntries(Array.from({ length: 130 }, (_, i) => [`k${i}`, i]))
    const messy: Attributes = { ...ATTRIBUTES, "": "no key", gone: undefined, nothing: null as unknown as undefined }
    for (const attributes of [ATTRIBUTES, many, messy]) {
      const { ours, exported } = both(1, remoteParent(TraceFlags.SAMPLED), (span) => {
        span.setAttribute("codeq.worker_id", "w-1")
        span.end(END)
      }, attributes)
      expect(ours).toBeInstanceOf(RecordedSpan)
      const [recorded, made] = exported as [ReadableSpan, ReadableSpan]
      expect(shape(recorded)).toEqual(shape(made))
    }
    const [recorded] = both(1, ROOT_CONTEXT, (span) => span.end(END), many).exported as [ReadableSpan]
    expect([Object.keys(recorded.attributes).length, recorded.droppedAttributesCount]).toEqual([128, 2])
  })

  it("takes attributes set later as the SDK's span does: on a span started without any, beside those it has, none once it has ended", () => {
    const { ours, exported } = both(1, remoteParent(TraceFlags.SAMPLED), (span) => {
      span.setAttributes(ATTRIBUTES)
      span.end(END)
      span.setAttributes({ late: 1 })
    }, {})
    expect(ours).toBeInstanceOf(RecordedSpan)
    const [recorded, made] = exported as [ReadableSpan, ReadableSpan]
    expect(recorded.attributes).toEqual(ATTRIBUTES)
    expect(shape(recorded)).toEqual(shape(made))

    const { exported: late } = both(1, remoteParent(TraceFlags.SAMPLED), (span) => {
      span.end(END)
      span.setAttributes(ATTRIBUTES)
    }, {})
    const [endedFirst, madeEnded] = late as [ReadableSpan, ReadableSpan]
    expect(endedFirst.attributes).toEqual({})
    expect(shape(endedFirst)).toEqual(shape(madeEnded))

    const { exported: more } = both(1, remoteParent(TraceFlags.SAMPLED), (span) => {
      span.setAttributes({ "codeq.worker_id": "w-1" })
      span.end(END)
    })
    const [added, madeAdded] = more as [ReadableSpan, ReadableSpan]
    expect(added.attributes).toEqual({ ...ATTRIBUTES, "codeq.worker_id": "w-1" })
    expect(shape(added)).toEqual(shape(madeAdded))
  })

  it("as a root at ratio 1: a new sampled trace; at ratio 0: ids of its own, not recorded, nothing exported", () => {
    const sampled = both(1, ROOT_CONTEXT)
    expect(shape(sampled.exported[0] as ReadableSpan)).toEqual({ ...shape(sampled.exported[1] as ReadableSpan), traceId: expect.any(String) })
    expect(sampled.ours.spanContext().traceId).not.toBe(sampled.sdk.spanContext().traceId)

    const dropped = both(0, ROOT_CONTEXT)
    expect(dropped.exported).toEqual([])
    for (const span of [dropped.ours, dropped.sdk]) {
      expect(span.isRecording()).toBe(false)
      expect(trace.isSpanContextValid(span.spanContext())).toBe(true)
      expect(span.spanContext().traceFlags).toBe(TraceFlags.NONE)
    }
  })

  it("under an unsampled parent: its trace, not recorded, as the SDK decides", () => {
    const { ours, sdk, exported } = both(1, remoteParent(TraceFlags.NONE))
    expect(exported).toEqual([])
    expect([ours.isRecording(), ours.spanContext().traceId, ours.spanContext().traceFlags]).toEqual([sdk.isRecording(), sdk.spanContext().traceId, sdk.spanContext().traceFlags])
  })

  it("under a local parent, sampled or not, and under one with invalid ids (a root): as the SDK's sampler decides", () => {
    const local = (flags: number, spanId = "00f067aa0ba902b7"): Context => trace.setSpanContext(ROOT_CONTEXT, { traceId: TRACE_ID, spanId, traceFlags: flags, traceState: new TraceState("l=2") })
    const sampled = both(1, local(TraceFlags.SAMPLED))
    expect(sampled.exported).toHaveLength(2)
    const [recorded, made] = sampled.exported as [ReadableSpan, ReadableSpan]
    expect(shape(recorded)).toEqual(shape(made))
    expect(recorded.spanContext().traceState?.serialize()).toBe("l=2")

    const unsampled = both(1, local(TraceFlags.NONE))
    expect(unsampled.exported).toEqual([])
    expect([unsampled.ours.isRecording(), unsampled.ours.spanContext().traceId, unsampled.ours.spanContext().traceState?.serialize()]).toEqual([false, TRACE_ID, "l=2"])

    // An all-zero span id makes the parent invalid: the root sampler decides (ratio 0: not recorded, a new trace).
    const invalid = both(0, local(TraceFlags.SAMPLED, "0000000000000000"))
    expect(invalid.exported).toEqual([])
    for (const span of [invalid.ours, invalid.sdk]) {
      expect(span.isRecording()).toBe(false)
      expect(span.spanContext().traceId).not.toBe(TRACE_ID)
    }
  })

  it("in a context where tracing is suppressed: left to the SDK, which records nothing", () => {
    const { ours, exported } = both(1, suppressTracing(remoteParent(TraceFlags.SAMPLED)))
    expect(ours).not.toBeInstanceOf(RecordedSpan)
    expect(trace.isSpanContextValid(ours.spanContext())).toBe(false)
    expect(exported).toEqual([])
  })

  it("takes links and events as the SDK's span does, each span its own, and reads its duration as the SDK's does, before and after its end", () => {
    const link = { context: { traceId: TRACE_ID, spanId: "00f067aa0ba902b7", traceFlags: TraceFlags.SAMPLED }, attributes: { why: "follows" } }
    const { ours, sdk, exported } = both(1, remoteParent(TraceFlags.SAMPLED), (span) => {
      expect((span as unknown as ReadableSpan).duration).toEqual([-1, -1])
      span.addLink(link)
      span.addEvent("retry", { n: 1 }, END)
      span.end(END)
    })
    const [recorded, made] = exported as [ReadableSpan, ReadableSpan]
    expect(shape(recorded)).toEqual(shape(made))
    expect(recorded.links).toHaveLength(1)
    // A span without links or events of its own shares none with one that has them.
    const plain = both(1, remoteParent(TraceFlags.SAMPLED)).exported[0] as ReadableSpan
    expect([plain.links, plain.events]).toEqual([[], []])
    expect([ours, sdk].map((span) => (span as unknown as ReadableSpan).duration)).toEqual([made.duration, made.duration])
    // An end given before the start ends at the start, as the SDK's does.
    const early = both(1, remoteParent(TraceFlags.SAMPLED), (span) => span.end([1, 0])).exported as [ReadableSpan, ReadableSpan]
    expect(shape(early[0])).toEqual(shape(early[1]))
    expect(early[0].duration).toEqual([0, 0])
  })

  it("keeps attributes built for it by a function as they are, and copies those given as an object", () => {
    const { provider, exported } = providerAt(1, true)
    const telemetry = new Telemetry(provider)
    const built: Attributes = { "codeq.task_id": "task-1" }
    telemetry.startTransition("codeq.repository", "codeq.task.claim", remoteParent(TraceFlags.SAMPLED), () => built).span.end(END)
    const given: Attributes = { "codeq.task_id": "task-2" }
    telemetry.startTransition("codeq.repository", "codeq.task.claim", remoteParent(TraceFlags.SAMPLED), given).span.end(END)
    given["codeq.task_id"] = "changed by the caller"
    const [first, second] = exported() as [ReadableSpan, ReadableSpan]
    expect(first.attributes).toBe(built)
    expect(second.attributes).toEqual({ "codeq.task_id": "task-2" })
  })

  it("builds attributes from a function once, when first needed: not at its start, never when not recorded, at once for a sampler that reads them", () => {
    const { provider, exported } = providerAt(1, true)
    const telemetry = new Telemetry(provider)
    let calls = 0
    const attributes = () => {
      calls++
      return { "codeq.task_id": "task-1" }
    }
    const span = telemetry.startTransition("codeq.repository", "codeq.task.claim", remoteParent(TraceFlags.SAMPLED), attributes).span
    expect(calls).toBe(0)
    span.end(END)
    const [recorded] = exported() as [ReadableSpan]
    expect(recorded.attributes).toEqual({ "codeq.task_id": "task-1" })
    expect(recorded.attributes).toBe(recorded.attributes)
    expect(calls).toBe(1)

    telemetry.startTransition("codeq.repository", "codeq.task.claim", remoteParent(TraceFlags.NONE), attributes).span.end(END)
    expect(calls).toBe(1)

    // A root is decided by its trace id alone (setupTracing's sampler).
    telemetry.startTransition("codeq.scheduler", "codeq.task.create", ROOT_CONTEXT, attributes)
    expect(calls).toBe(1)

    // A sampler that reads the attributes gets them at the start; what it adds joins them.
    const seen: Array<Attributes> = []
    const reading: Sampler = {
      shouldSample: (_context, _traceId, _name, _kind, given) => {
        seen.push(given)
        return { decision: SamplingDecision.RECORD_AND_SAMPLED, attributes: { "sampler.rule": "all" } }
      }
    }
    const exporter = new InMemorySpanExporter()
    const processor = new SimpleSpanProcessor(exporter)
    const custom = new BasicTracerProvider({ sampler: reading, spanProcessors: [processor] })
    registerSpanSink(custom, { sampler: reading, resource: resourceFromAttributes({}), processor })
    new Telemetry(custom).startTransition("codeq.scheduler", "codeq.task.create", remoteParent(TraceFlags.SAMPLED), attributes).span.end(END)
    expect(calls).toBe(2)
    expect(seen).toEqual([{ "codeq.task_id": "task-1" }])
    expect(exporter.getFinishedSpans()[0]?.attributes).toEqual({ "codeq.task_id": "task-1", "sampler.rule": "all" })
  })

  it("records nothing after its end, and ends once", () => {
    const { provider, exported } = providerAt(1, true)
    const span = new Telemetry(provider).startTransition("codeq.results", "codeq.submit_result", remoteParent(TraceFlags.SAMPLED), ATTRIBUTES).span
    span.end(END)
    span.setAttribute("late", 1).setStatus({ code: SpanStatusCode.ERROR }).updateName("renamed")
    span.end()
    expect(exported()).toHaveLength(1)
    expect(exported()[0]).toMatchObject({ name: "codeq.submit_result", status: { code: SpanStatusCode.UNSET }, attributes: ATTRIBUTES })
  })
})

describe("a transition span through the global provider", () => {
  it("is recorded by codeq when the global proxy delegates to codeq's provider, under the SDK tracer's scope", () => {
    const { provider, exported } = providerAt(1, true)
    trace.setGlobalTracerProvider(provider)
    try {
      const span = new Telemetry().startTransition("codeq.scheduler", "codeq.task.create", remoteParent(TraceFlags.SAMPLED), ATTRIBUTES).span
      span.end(END)
      provider.getTracer("codeq.scheduler").startSpan("sdk").end(END)
      expect(span).toBeInstanceOf(RecordedSpan)
      const [recorded, made] = exported() as [ReadableSpan, ReadableSpan]
      expect(recorded.instrumentationScope).toBe(made.instrumentationScope)
    } finally {
      trace.disable()
    }
  })
})

describe("a transition span on a provider that is not codeq's", () => {
  it("goes through the SDK's Tracer", () => {
    const { provider, exported } = providerAt(1, false)
    const span = new Telemetry(provider).startTransition("codeq.repository", "codeq.task.claim", remoteParent(TraceFlags.SAMPLED), ATTRIBUTES).span
    span.end(END)
    expect(span).not.toBeInstanceOf(RecordedSpan)
    expect(exported()).toHaveLength(1)
  })

  it("opened without a start time and ended without one (the worker's processing span): never ends before it starts", () => {
    const { provider, exported } = providerAt(1, false)
    const telemetry = new Telemetry(provider)
    // Given a sub-millisecond start, the SDK would end these at Date.now() and clamp most to zero.
    for (let i = 0; i < 50; i++) telemetry.startSpan("codeq.worker", "codeq.task.process", remoteParent(TraceFlags.SAMPLED), ATTRIBUTES).end()
    const spans = exported() as ReadonlyArray<ReadableSpan>
    expect(spans).toHaveLength(50)
    expect(spans.filter((span) => span.duration[0] === 0 && span.duration[1] === 0)).toEqual([])
  })
})

describe("a transition span's destination", () => {
  it("is the tenant's subject filter of the event's subject, whichever subject came before", () => {
    const subjects = ["r.evt.aa.t1", "r.evt.aa.t2", "r.evt.bb.t3", "r.evt.aa.t4", "other.evt.aa.t5", "r.evt.tenant-long.t6", "r.evt.aa.t7", "plain", "plain"]
    expect(subjects.map(eventDestination)).toEqual(["r.evt.aa.*", "r.evt.aa.*", "r.evt.bb.*", "r.evt.aa.*", "other.evt.aa.*", "r.evt.tenant-long.*", "r.evt.aa.*", "*", "*"])
  })
})
