/**
 * codeq's propagator on its own (DESIGN §6): W3C trace context and baggage always written, B3
 * single and multi always read, B3 written only in the encodings asked for.
 */
import { ROOT_CONTEXT, TraceFlags, defaultTextMapGetter, defaultTextMapSetter, propagation, trace, type Context } from "@opentelemetry/api"
import { describe, expect, it } from "vitest"
import { CodeqPropagator } from "../src/tracing/propagation.js"

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
const SPAN_ID = "00f067aa0ba902b7"
const B3_TRACE_ID = "80f198ee56343ba864fe8b2a57d3eff7"
const B3_SPAN_ID = "e457b5a2e4d86bd1"

const sampledContext = (): Context =>
  trace.setSpanContext(ROOT_CONTEXT, { traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: TraceFlags.SAMPLED, isRemote: true })

const injected = (propagator: CodeqPropagator, ctx: Context): Record<string, string> => {
  const headers: Record<string, string> = {}
  propagator.inject(ctx, headers, defaultTextMapSetter)
  return headers
}

const extracted = (propagator: CodeqPropagator, headers: Record<string, string>) =>
  trace.getSpanContext(propagator.extract(ROOT_CONTEXT, headers, defaultTextMapGetter))

describe("injection", () => {
  it("writes traceparent and baggage, and no B3, by default", () => {
    const ctx = propagation.setBaggage(sampledContext(), propagation.createBaggage({ tenant: { value: "acme" } }))
    expect(injected(new CodeqPropagator(), ctx)).toEqual({ traceparent: `00-${TRACE_ID}-${SPAN_ID}-01`, baggage: "tenant=acme" })
  })

  it("adds the single b3 header when asked for b3", () => {
    const headers = injected(new CodeqPropagator({ single: true, multi: false }), sampledContext())
    expect(headers).toMatchObject({ traceparent: `00-${TRACE_ID}-${SPAN_ID}-01`, b3: `${TRACE_ID}-${SPAN_ID}-1` })
    expect(Object.keys(headers).filter((key) => key.startsWith("x-b3-"))).toEqual([])
  })

  it("adds the X-B3 headers when asked for b3multi", () => {
    const headers = injected(new CodeqPropagator({ single: false, multi: true }), sampledContext())
    expect(headers).toMatchObject({ "x-b3-traceid": TRACE_ID, "x-b3-spanid": SPAN_ID, "x-b3-sampled": "1" })
    expect(headers.b3).toBeUndefined()
  })
})

describe("extraction", () => {
  it("reads a W3C traceparent", () => {
    expect(extracted(new CodeqPropagator(), { traceparent: `00-${TRACE_ID}-${SPAN_ID}-01` })).toMatchObject({ traceId: TRACE_ID, spanId: SPAN_ID, isRemote: true })
  })

  it("reads a single b3 header even when B3 is not emitted", () => {
    const parent = extracted(new CodeqPropagator(), { b3: `${B3_TRACE_ID}-${B3_SPAN_ID}-1` })
    expect(parent).toMatchObject({ traceId: B3_TRACE_ID, spanId: B3_SPAN_ID, traceFlags: TraceFlags.SAMPLED })
  })

  it("reads multi-header B3 even when B3 is not emitted", () => {
    const parent = extracted(new CodeqPropagator(), { "x-b3-traceid": B3_TRACE_ID, "x-b3-spanid": B3_SPAN_ID, "x-b3-sampled": "0" })
    expect(parent).toMatchObject({ traceId: B3_TRACE_ID, spanId: B3_SPAN_ID, traceFlags: TraceFlags.NONE })
  })

  it("lets traceparent decide the parent when a request carries both W3C and B3", () => {
    const headers = { traceparent: `00-${TRACE_ID}-${SPAN_ID}-01`, b3: `${B3_TRACE_ID}-${B3_SPAN_ID}-1` }
    expect(extracted(new CodeqPropagator(), headers)).toMatchObject({ traceId: TRACE_ID, spanId: SPAN_ID })
  })

  it("leaves the context alone when no trace header is present", () => {
    expect(extracted(new CodeqPropagator(), { "content-type": "application/json" })).toBeUndefined()
  })

  it("declares every header it reads or writes", () => {
    const fields = new CodeqPropagator({ single: true, multi: true }).fields()
    expect(fields).toEqual(expect.arrayContaining(["traceparent", "tracestate", "baggage", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled"]))
  })
})
