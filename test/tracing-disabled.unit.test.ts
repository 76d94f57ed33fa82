/**
 * Tracing disabled (DESIGN §6): nothing is exported, yet the propagator and the context manager
 * are installed, so a producer's trace headers pass through the broker untouched and every span
 * still gets its own ids for the events it writes.
 */
import { ProxyTracerProvider, ROOT_CONTEXT, TraceFlags, context, createContextKey, propagation, trace } from "@opentelemetry/api"
import { beforeAll, describe, expect, it } from "vitest"
import { contextFromHeaders, traceHeadersOf } from "../src/tracing/propagation.js"
import { setupTracing, type TracingHandle } from "../src/tracing/setup.js"
import type { TracingLogger } from "../src/tracing/export.js"

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
const SPAN_ID = "00f067aa0ba902b7"
const TRACEPARENT = `00-${TRACE_ID}-${SPAN_ID}-01`
const TRACESTATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"

const warnings: Array<{ fields: Record<string, unknown>; message: string }> = []
const logger: TracingLogger = { warn: (fields, message) => void warnings.push({ fields, message }), info: () => undefined }

let handle: TracingHandle
beforeAll(() => {
  handle = setupTracing({ tracingEnabled: false }, { env: {}, logger })
})

describe("setupTracing with tracing disabled", () => {
  it("exports nothing, registers no provider, logs nothing and shuts down at once", async () => {
    expect(handle.exporting).toBe(false)
    const global = trace.getTracerProvider()
    expect(global instanceof ProxyTracerProvider && global.getDelegateTracer("codeq") === undefined).toBe(true)
    expect(warnings).toEqual([])
    expect(await handle.shutdown()).toBe("flushed")
    expect(handle.counters()).toEqual({ exportFailures: 0, droppedSpans: 0, exportedSpans: 0 })
  })

  it("still gives every span valid ids of its own", () => {
    const tracer = handle.provider.getTracer("codeq/scheduler")
    const spans = Array.from({ length: 100 }, () => tracer.startSpan("codeq.task.create"))
    const contexts = spans.map((span) => span.spanContext())
    for (const ctx of contexts) expect(trace.isSpanContextValid(ctx)).toBe(true)
    expect(new Set(contexts.map((ctx) => ctx.spanId)).size).toBe(100)
    expect(new Set(contexts.map((ctx) => ctx.traceId)).size).toBe(100)
    for (const span of spans) span.end()
  })

  it("passes traceparent, tracestate and baggage through untouched", () => {
    const inbound = { traceparent: TRACEPARENT, tracestate: TRACESTATE, baggage: "tenant=acme" }
    expect(traceHeadersOf(contextFromHeaders(inbound))).toEqual(inbound)
  })

  it("continues the producer's trace in the spans it opens and the headers it sends on", () => {
    const parent = contextFromHeaders({ traceparent: TRACEPARENT, tracestate: TRACESTATE })
    const span = handle.provider.getTracer("codeq/result_callback").startSpan("codeq.webhook.task_result", {}, parent)
    const outbound = traceHeadersOf(trace.setSpan(parent, span))
    expect(outbound.traceparent).toBe(`00-${TRACE_ID}-${span.spanContext().spanId}-01`)
    expect(span.spanContext().spanId).not.toBe(SPAN_ID)
    expect(outbound.tracestate).toBe(TRACESTATE)
    span.end()
  })

  it("accepts B3 single and multi-header parents", () => {
    const single = trace.getSpanContext(contextFromHeaders({ b3: `${TRACE_ID}-${SPAN_ID}-1` }))
    const multi = trace.getSpanContext(contextFromHeaders({ "X-B3-TraceId": TRACE_ID, "X-B3-SpanId": SPAN_ID, "X-B3-Sampled": "1" }))
    for (const parent of [single, multi]) expect(parent).toMatchObject({ traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: TraceFlags.SAMPLED })
  })

  it("installs the global propagator and an AsyncLocalStorage context manager that survives awaits", async () => {
    expect(propagation.fields()).toEqual(expect.arrayContaining(["traceparent", "baggage", "b3"]))
    const key = createContextKey("codeq.test")
    const seen = await context.with(ROOT_CONTEXT.setValue(key, "request-1"), async () => {
      await new Promise((resolve) => setImmediate(resolve))
      return context.active().getValue(key)
    })
    expect(seen).toBe("request-1")
  })
})

describe("OTEL_PROPAGATORS naming propagators codeq lacks", () => {
  it("warns once, listing them, and keeps W3C and B3", () => {
    warnings.length = 0
    setupTracing({}, { env: { OTEL_PROPAGATORS: "tracecontext,jaeger,b3" }, logger })
    expect(warnings).toHaveLength(1)
    expect(warnings[0]?.fields).toEqual({ ignored: ["jaeger"] })
    const span = handle.provider.getTracer("codeq/result_callback").startSpan("codeq.webhook.task_result")
    expect(Object.keys(traceHeadersOf(trace.setSpan(ROOT_CONTEXT, span))).sort()).toEqual(["b3", "traceparent"])
    span.end()
  })
})
