/**
 * The real OTLP gRPC exporter against a real in-process receiver (DESIGN §6, §8): what arrives
 * at the collector, how sampling honours an upstream decision, how W3C and B3 parents are taken
 * in and B3 sent on, the shutdown flush, and a log line joinable to its span.
 */
import { ROOT_CONTEXT, context, trace } from "@opentelemetry/api"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { createLogger } from "../src/log/log.js"
import { withTrace } from "../src/tracing/logFields.js"
import type { TracingConfigInput, TracingEnv } from "../src/tracing/config.js"
import { ATTR, SPANS, TRACERS } from "../src/tracing/conventions.js"
import type { TracingLogger } from "../src/tracing/export.js"
import { contextFromHeaders, traceHeadersOf } from "../src/tracing/propagation.js"
import { setupTracing, type TracingHandle } from "../src/tracing/setup.js"
import { Telemetry } from "../src/tracing/spans.js"
import { countExportRequestSpans, startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from "./support/otlpReceiver.js"

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
const SPAN_ID = "00f067aa0ba902b7"
const quiet: TracingLogger = { warn: () => undefined, info: () => undefined }

let receiver: OtlpReceiver
let handle: TracingHandle | undefined

beforeEach(async () => {
  receiver = await startOtlpReceiver()
})

afterEach(async () => {
  await handle?.shutdown(1_000)
  handle = undefined
  await receiver.stop()
})

/** Tracing enabled and pointed at this test's receiver over plaintext gRPC. */
const startTracing = (input: TracingConfigInput = {}, env: TracingEnv = {}): TracingHandle =>
  (handle = setupTracing({ tracingEnabled: true, tracingOtlpEndpoint: receiver.endpoint, tracingOtlpInsecure: true, ...input }, { env, logger: quiet }))

const named = (name: string) => (spans: ReadonlyArray<ReceivedSpan>) => spans.some((span) => span.name === name)

/** The one received span called `name`, waiting for it with a deadline. */
const received = async (name: string): Promise<ReceivedSpan> => {
  const spans = await receiver.waitForSpans(named(name))
  const matching = spans.filter((span) => span.name === name)
  expect(matching).toHaveLength(1)
  return matching[0] as ReceivedSpan
}

describe("export to the collector", () => {
  it("delivers spans from the global provider under the configured service.name and tracer scope", async () => {
    const tracing = startTracing({ tracingServiceName: "codeq-test" })
    const span = trace.getTracer(TRACERS.scheduler).startSpan(SPANS.create, { attributes: { [ATTR.command]: "resize", [ATTR.priority]: 5, [ATTR.hasWebhook]: true } })
    span.end()
    expect(await tracing.flush()).toBe("flushed")

    const got = await received(SPANS.create)
    expect(got.resource["service.name"]).toBe("codeq-test")
    expect(got.scope.name).toBe(TRACERS.scheduler)
    expect(got.attributes).toEqual({ [ATTR.command]: "resize", [ATTR.priority]: 5, [ATTR.hasWebhook]: true })
    expect(got).toMatchObject({ traceId: span.spanContext().traceId, spanId: span.spanContext().spanId, parentSpanId: undefined })
    expect(got.end >= got.start && got.start > 0n).toBe(true)
    expect(tracing.counters()).toEqual({ exportFailures: 0, droppedSpans: 0, exportedSpans: 1 })
  })

  it("reports under OTEL_SERVICE_NAME when it is set", async () => {
    const tracing = startTracing({ tracingServiceName: "from-file" }, { OTEL_SERVICE_NAME: "from-env" })
    trace.getTracer(TRACERS.results).startSpan(SPANS.submitResult).end()
    await tracing.flush()
    expect((await received(SPANS.submitResult)).resource["service.name"]).toBe("from-env")
  })

  it("exports a transition opened by Telemetry with the ids its event carries", async () => {
    const tracing = startTracing()
    const parent = contextFromHeaders({ traceparent: `00-${TRACE_ID}-${SPAN_ID}-01` })
    const transition = new Telemetry(tracing.provider).startTransition(TRACERS.repository, SPANS.claim, parent, { [ATTR.workerId]: "w-1" })
    transition.span.end()
    await tracing.flush()

    const got = await received(SPANS.claim)
    expect(transition.trace.traceparent).toBe(`00-${got.traceId}-${got.spanId}-01`)
    expect(got).toMatchObject({ traceId: TRACE_ID, parentSpanId: SPAN_ID, attributes: { [ATTR.workerId]: "w-1" } })
  })

  it("parents a span started inside context.with on the active span, across an await", async () => {
    const tracing = startTracing()
    const tracer = trace.getTracer(TRACERS.scheduler)
    const outer = tracer.startSpan("outer")
    await context.with(trace.setSpan(ROOT_CONTEXT, outer), async () => {
      await new Promise((resolve) => setImmediate(resolve))
      tracer.startSpan("inner").end()
    })
    outer.end()
    await tracing.flush()
    expect((await received("inner")).parentSpanId).toBe(outer.spanContext().spanId)
  })
})

describe("requests within a collector's message limit", () => {
  it("splits a batch whose request would pass the 4 MiB a gRPC server takes by default, and every span arrives", async () => {
    // 4,096 spans (one batch) of ~1.5 KB: one request would be ~6 MB, which the receiver (grpc-js,
    // like the OpenTelemetry Collector and Jaeger) refuses whole with RESOURCE_EXHAUSTED.
    const tracing = startTracing()
    const tracer = trace.getTracer("app")
    const spans = 4_096
    for (let i = 0; i < spans; i++) tracer.startSpan("app.query", { attributes: { "db.statement": `select ${i} `.padEnd(1_500, "x") } }).end()
    expect(await tracing.flush(20_000)).toBe("flushed")
    await receiver.waitForSpans((got) => got.length === spans, 20_000)
    expect(receiver.requests()).toBeGreaterThan(1)
    expect(tracing.counters()).toEqual({ exportFailures: 0, droppedSpans: 0, exportedSpans: spans })
  })

  it("loses only a span too large for any request, and counts it alone as dropped", async () => {
    const tracing = startTracing()
    const tracer = trace.getTracer("app")
    for (let i = 0; i < 9; i++) tracer.startSpan(`app.small-${i}`).end()
    tracer.startSpan("app.huge", { attributes: { blob: "x".repeat(5 * 2 ** 20) } }).end()
    // The export reports the huge span's refusal: the flush says it failed.
    expect(await tracing.flush(20_000)).toBe("failed")
    const got = await receiver.waitForSpans((spans) => spans.length === 9, 20_000)
    expect(got.map((span) => span.name).sort()).toEqual(Array.from({ length: 9 }, (_, i) => `app.small-${i}`))
    expect(tracing.counters()).toEqual({ exportFailures: 1, droppedSpans: 1, exportedSpans: 9 })
  })
})

describe("a receiver that only counts (the benchmark's)", () => {
  it("counts every span of requests spanning several tracers, as many as a decoding receiver decodes", async () => {
    const counting = await startOtlpReceiver({ keeps: "count" })
    try {
      handle = setupTracing({ tracingEnabled: true, tracingOtlpEndpoint: counting.endpoint, tracingOtlpInsecure: true }, { env: {}, logger: quiet })
      for (let i = 0; i < 40; i++) {
        const tracer = trace.getTracer(i % 2 === 0 ? TRACERS.repository : TRACERS.results)
        const span = tracer.startSpan(SPANS.claim, { attributes: { [ATTR.workerId]: `w-${i}`, [ATTR.attempt]: i } })
        span.addEvent("retry", { n: i })
        span.end()
      }
      expect(await handle.flush()).toBe("flushed")
      expect(counting.spanCount()).toBe(40)
      expect(counting.spans()).toEqual([])
      expect(handle.counters()).toEqual({ exportFailures: 0, droppedSpans: 0, exportedSpans: 40 })
    } finally {
      await handle?.shutdown(1_000)
      handle = undefined
      await counting.stop()
    }
  })

  it("refuses a request whose structure is cut short", () => {
    // ResourceSpans (field 1) announcing 10 bytes, of which 2 arrive.
    expect(() => countExportRequestSpans(Uint8Array.from([0x0a, 0x0a, 0x12, 0x00]))).toThrow(/truncated/)
    expect(countExportRequestSpans(Uint8Array.from([0x0a, 0x04, 0x12, 0x02, 0x12, 0x00]))).toBe(1)
  })
})

describe("sampling: ParentBased(TraceIdRatioBased(ratio))", () => {
  it("exports a span whose remote parent is sampled even at ratio 0", async () => {
    const tracing = startTracing({ tracingSampleRatio: 0 })
    const parent = contextFromHeaders({ traceparent: `00-${TRACE_ID}-${SPAN_ID}-01` })
    trace.getTracer(TRACERS.repository).startSpan(SPANS.heartbeat, {}, parent).end()
    await tracing.flush()
    expect(await received(SPANS.heartbeat)).toMatchObject({ traceId: TRACE_ID, parentSpanId: SPAN_ID })
  })

  it("exports nothing for new traces at ratio 0 nor under an unsampled parent, yet gives every span distinct valid ids", async () => {
    const tracing = startTracing({ tracingSampleRatio: 0 })
    const tracer = trace.getTracer(TRACERS.scheduler)
    const unsampledParent = contextFromHeaders({ traceparent: `00-${TRACE_ID}-${SPAN_ID}-00` })
    const spans = [...Array.from({ length: 50 }, () => tracer.startSpan(SPANS.create)), tracer.startSpan(SPANS.nack, {}, unsampledParent)]
    for (const span of spans) span.end()
    const ids = spans.map((span) => span.spanContext())
    for (const ctx of ids) expect(trace.isSpanContextValid(ctx) && ctx.traceFlags === 0).toBe(true)
    expect(new Set(ids.map((ctx) => ctx.spanId)).size).toBe(spans.length)
    expect(new Set(ids.slice(0, 50).map((ctx) => ctx.traceId)).size).toBe(50)

    // A sampled sentinel ended after them: once it has arrived, anything exportable had too.
    tracer.startSpan("sentinel", {}, contextFromHeaders({ traceparent: `00-${TRACE_ID}-${SPAN_ID}-01` })).end()
    await tracing.flush()
    await receiver.waitForSpans(named("sentinel"))
    expect(receiver.spans().map((span) => span.name)).toEqual(["sentinel"])
  })
})

describe("inbound parents and outbound headers", () => {
  const B3_TRACE_ID = "80f198ee56343ba864fe8b2a57d3eff7"
  const B3_SPAN_ID = "e457b5a2e4d86bd1"

  it("takes a single b3 header as the parent, sampling decision included", async () => {
    const tracing = startTracing({ tracingSampleRatio: 0 })
    trace.getTracer(TRACERS.scheduler).startSpan(SPANS.create, {}, contextFromHeaders({ b3: `${B3_TRACE_ID}-${B3_SPAN_ID}-1` })).end()
    await tracing.flush()
    expect(await received(SPANS.create)).toMatchObject({ traceId: B3_TRACE_ID, parentSpanId: B3_SPAN_ID })
  })

  it("takes multi-header B3 as the parent, widening a 64-bit trace id", async () => {
    const tracing = startTracing({ tracingSampleRatio: 0 })
    const headers = { "x-b3-traceid": "64fe8b2a57d3eff7", "x-b3-spanid": B3_SPAN_ID, "x-b3-sampled": "1" }
    trace.getTracer(TRACERS.scheduler).startSpan(SPANS.create, {}, contextFromHeaders(headers)).end()
    await tracing.flush()
    expect(await received(SPANS.create)).toMatchObject({ traceId: "000000000000000064fe8b2a57d3eff7", parentSpanId: B3_SPAN_ID })
  })

  it.each([
    ["tracecontext,b3", (got: ReceivedSpan) => ({ b3: `${got.traceId}-${got.spanId}-1` })],
    ["tracecontext,b3multi", (got: ReceivedSpan) => ({ "x-b3-traceid": got.traceId, "x-b3-spanid": got.spanId, "x-b3-sampled": "1" })]
  ])("with OTEL_PROPAGATORS=%s sends the exported span on in B3 as well as W3C", async (propagators, expected) => {
    const tracing = startTracing({}, { OTEL_PROPAGATORS: propagators })
    const span = trace.getTracer(TRACERS.resultCallback).startSpan(SPANS.webhook)
    const outbound = traceHeadersOf(trace.setSpan(ROOT_CONTEXT, span))
    span.end()
    await tracing.flush()

    const got = await received(SPANS.webhook)
    expect(outbound).toMatchObject({ traceparent: `00-${got.traceId}-${got.spanId}-01`, ...expected(got) })
  })

  it("sends no B3 unless OTEL_PROPAGATORS asks for it", () => {
    startTracing()
    const span = trace.getTracer(TRACERS.resultCallback).startSpan(SPANS.webhook)
    expect(Object.keys(traceHeadersOf(trace.setSpan(ROOT_CONTEXT, span)))).toEqual(["traceparent"])
    span.end()
  })
})

describe("shutdown", () => {
  it("flushes spans still queued in the batch processor within the deadline", async () => {
    const tracing = startTracing()
    const tracer = trace.getTracer(TRACERS.repository)
    for (let i = 0; i < 25; i++) tracer.startSpan(SPANS.heartbeat).end()
    // The batch delay (5 s) has not passed: the spans are still queued.
    expect(receiver.requests()).toBe(0)

    expect(await tracing.shutdown(5_000)).toBe("flushed")
    expect(receiver.spans().filter((span) => span.name === SPANS.heartbeat)).toHaveLength(25)
    expect(await tracing.shutdown(5_000)).toBe("flushed")
  })

  it("gives up at the deadline when the collector never answers, without throwing", async () => {
    const tracing = startTracing()
    receiver.setBehaviour("hang")
    trace.getTracer(TRACERS.repository).startSpan(SPANS.abandon).end()
    expect(await tracing.shutdown(200)).toBe("timed_out")
  })
})

describe("logs joinable to spans", () => {
  it("writes a log line carrying the trace_id, span_id and traceparent of the span it was written under", async () => {
    const tracing = startTracing()
    const lines: Array<Record<string, unknown>> = []
    const logger = createLogger({ destination: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) } })
    const span = trace.getTracer(TRACERS.scheduler).startSpan(SPANS.create)
    withTrace(logger, trace.setSpan(context.active(), span)).info({ [ATTR.taskId]: "t-1" }, "task created")
    span.end()
    await tracing.flush()

    const got = await received(SPANS.create)
    expect(lines[0]).toMatchObject({ trace_id: got.traceId, span_id: got.spanId, traceparent: `00-${got.traceId}-${got.spanId}-01`, msg: "task created" })
  })
})
