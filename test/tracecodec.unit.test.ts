/**
 * The pure trace header codec: W3C traceparent parsing and formatting, the trace headers an event
 * carries (DESIGN §2), and the span start time recorded in them.
 */
import { ROOT_CONTEXT, TraceFlags, trace, type SpanContext } from "@opentelemetry/api"
import { TraceState } from "@opentelemetry/core"
import { describe, expect, it } from "vitest"
import type { EventTrace } from "../src/domain/events.js"
import {
  contextFromTraceparent,
  eventTraceOf,
  formatTraceparent,
  traceFlagsOf,
  isValidTraceparent,
  parseTraceparent,
  readTraceHeaders,
  spanStartNow,
  wallClockMs,
  writeTraceHeaders
} from "../src/tracing/codec.js"
import { HEADERS } from "../src/tracing/conventions.js"

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
const SPAN_ID = "00f067aa0ba902b7"
const SAMPLED = `00-${TRACE_ID}-${SPAN_ID}-01`
const UNSAMPLED = `00-${TRACE_ID}-${SPAN_ID}-00`
const TRACESTATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"

/** Trace headers in a plain map, as a NATS header set would hold them. */
const headerMap = () => {
  const headers = new Map<string, string>()
  return {
    headers,
    set: (key: string, value: string) => void headers.set(key, value),
    get: (key: string) => headers.get(key)
  }
}

describe("parseTraceparent and formatTraceparent", () => {
  it("parses a sampled traceparent into a remote span context", () => {
    expect(parseTraceparent(SAMPLED)).toEqual({
      traceId: TRACE_ID,
      spanId: SPAN_ID,
      traceFlags: TraceFlags.SAMPLED,
      isRemote: true
    })
  })

  it.each([SAMPLED, UNSAMPLED])("round-trips %s", (value) => {
    const parsed = parseTraceparent(value)
    if (parsed === undefined) return expect.unreachable(`${value} did not parse`)
    expect(formatTraceparent(parsed)).toBe(value)
  })

  it("round-trips a span context through its traceparent", () => {
    const ctx: SpanContext = { traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: TraceFlags.NONE }
    expect(parseTraceparent(formatTraceparent(ctx))).toEqual({ ...ctx, isRemote: true })
  })

  it("keeps the flags as received: sampled and Level 2's random (02) both survive a round trip", () => {
    const parsed = parseTraceparent(`00-${TRACE_ID}-${SPAN_ID}-03`)
    expect(parsed?.traceFlags).toBe(0x03)
    expect(parsed === undefined ? undefined : formatTraceparent(parsed)).toBe(`00-${TRACE_ID}-${SPAN_ID}-03`)
    expect(formatTraceparent({ traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: 0x02 })).toBe(`00-${TRACE_ID}-${SPAN_ID}-02`)
  })

  it("gives a child span its own sampling decision and the trace's other flags from its parent", () => {
    const parent = { traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: 0x03 }
    expect(traceFlagsOf({ ...parent, traceFlags: TraceFlags.SAMPLED }, parent)).toBe(0x03)
    expect(traceFlagsOf({ ...parent, traceFlags: TraceFlags.NONE }, parent)).toBe(0x02)
    expect(traceFlagsOf({ ...parent, traceFlags: TraceFlags.SAMPLED }, undefined)).toBe(0x01)
  })

  it("keeps tracestate list members with Level 2 keys ('@' after the first character) in order", () => {
    const parsed = parseTraceparent(SAMPLED, "foo@=1,bar=2,tenant@system=3,Bad=4,ok=5")
    expect(parsed?.traceState?.serialize()).toBe("foo@=1,bar=2,tenant@system=3,ok=5")
  })

  it("ignores whitespace around the value", () => {
    expect(parseTraceparent(`  ${SAMPLED}\t`)?.spanId).toBe(SPAN_ID)
  })

  it("accepts a future version with extra fields, reading the four it knows", () => {
    expect(parseTraceparent(`cc-${TRACE_ID}-${SPAN_ID}-01-what-the-future-holds`)).toMatchObject({
      traceId: TRACE_ID,
      spanId: SPAN_ID,
      traceFlags: TraceFlags.SAMPLED
    })
  })

  it.each([
    ["undefined", undefined],
    ["an empty string", ""],
    ["garbage", "not-a-traceparent"],
    ["uppercase hex", SAMPLED.toUpperCase()],
    ["a short trace id", `00-${TRACE_ID.slice(1)}-${SPAN_ID}-01`],
    ["a short span id", `00-${TRACE_ID}-${SPAN_ID.slice(1)}-01`],
    ["a missing flags field", `00-${TRACE_ID}-${SPAN_ID}`],
    ["a one-digit flags field", `00-${TRACE_ID}-${SPAN_ID}-1`],
    ["a non-hex character", `00-${TRACE_ID.slice(0, -1)}g-${SPAN_ID}-01`],
    ["version 00 with a trailing field", `${SAMPLED}-extra`],
    ["version 00 with a trailing hyphen", `${SAMPLED}-`],
    ["version ff", `ff-${TRACE_ID}-${SPAN_ID}-01`],
    ["an all-zero trace id", `00-${"0".repeat(32)}-${SPAN_ID}-01`],
    ["an all-zero span id", `00-${TRACE_ID}-${"0".repeat(16)}-01`]
  ])("rejects %s", (_label, value) => {
    expect(parseTraceparent(value)).toBeUndefined()
    expect(isValidTraceparent(value)).toBe(false)
  })

  it("keeps the tracestate given with the traceparent", () => {
    const parsed = parseTraceparent(SAMPLED, TRACESTATE)
    expect(parsed?.traceState?.serialize()).toBe(TRACESTATE)
    expect(parsed?.traceState?.get("rojo")).toBe("00f067aa0ba902b7")
    expect(parsed?.traceState?.get("congo")).toBe("t61rcWkgMzE")
  })

  it("leaves out an empty tracestate", () => {
    expect(parseTraceparent(SAMPLED, "")).not.toHaveProperty("traceState")
    expect(parseTraceparent(SAMPLED)).not.toHaveProperty("traceState")
  })
})

describe("contextFromTraceparent", () => {
  it("makes the persisted span context the remote parent", () => {
    const ctx = contextFromTraceparent(SAMPLED, TRACESTATE)
    const parent = trace.getSpanContext(ctx)
    expect(parent).toMatchObject({ traceId: TRACE_ID, spanId: SPAN_ID, isRemote: true })
    expect(parent?.traceState?.serialize()).toBe(TRACESTATE)
  })

  it("falls back to the root context for a missing or malformed traceparent", () => {
    expect(contextFromTraceparent(undefined)).toBe(ROOT_CONTEXT)
    expect(contextFromTraceparent(`ff-${TRACE_ID}-${SPAN_ID}-01`)).toBe(ROOT_CONTEXT)
  })
})

describe("writeTraceHeaders and readTraceHeaders", () => {
  const full: EventTrace = {
    traceparent: SAMPLED,
    tracestate: TRACESTATE,
    parentSpanId: "b7ad6b7169203331",
    spanStart: "1772366400123456789"
  }

  it("round-trips every field of an event's trace", () => {
    const { set, get } = headerMap()
    writeTraceHeaders(full, set)
    expect(readTraceHeaders(get)).toEqual(full)
  })

  it("writes each field under its published header name", () => {
    const { headers, set } = headerMap()
    writeTraceHeaders(full, set)
    expect(Object.fromEntries(headers)).toEqual({
      [HEADERS.traceparent]: SAMPLED,
      [HEADERS.tracestate]: TRACESTATE,
      [HEADERS.parentSpan]: "b7ad6b7169203331",
      [HEADERS.spanStart]: "1772366400123456789"
    })
  })

  it("writes only the traceparent of a root span without tracestate or start, and reads it back", () => {
    const root: EventTrace = { traceparent: UNSAMPLED, tracestate: undefined, parentSpanId: undefined, spanStart: undefined }
    const { headers, set, get } = headerMap()
    writeTraceHeaders(root, set)
    expect([...headers.keys()]).toEqual([HEADERS.traceparent])
    expect(readTraceHeaders(get)).toEqual(root)
  })

  it("reads blank optional headers as absent", () => {
    const { set, get } = headerMap()
    set(HEADERS.traceparent, SAMPLED)
    set(HEADERS.tracestate, "")
    set(HEADERS.parentSpan, "")
    set(HEADERS.spanStart, "")
    expect(readTraceHeaders(get)).toEqual({ traceparent: SAMPLED, tracestate: undefined, parentSpanId: undefined, spanStart: undefined })
  })

  it.each([
    ["missing", undefined],
    ["blank", ""]
  ])("reads no trace when the traceparent is %s", (_label, traceparent) => {
    const { set, get } = headerMap()
    if (traceparent !== undefined) set(HEADERS.traceparent, traceparent)
    set(HEADERS.parentSpan, "b7ad6b7169203331")
    expect(readTraceHeaders(get)).toBeUndefined()
  })
})

describe("eventTraceOf", () => {
  const start = { hr: [1772366400, 123456789] as [number, number], nanos: "1772366400123456789" }

  it("records the span's traceparent and tracestate, its parent's span id and its start", () => {
    const span: SpanContext = {
      traceId: TRACE_ID,
      spanId: "b7ad6b7169203331",
      traceFlags: TraceFlags.SAMPLED,
      traceState: new TraceState(TRACESTATE)
    }
    const parent: SpanContext = { traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: TraceFlags.SAMPLED }
    expect(eventTraceOf(span, parent, start)).toEqual({
      traceparent: `00-${TRACE_ID}-b7ad6b7169203331-01`,
      tracestate: TRACESTATE,
      parentSpanId: SPAN_ID,
      spanStart: "1772366400123456789"
    })
  })

  it("records a root span with no parent and an empty tracestate as undefined", () => {
    const span: SpanContext = { traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: TraceFlags.NONE, traceState: new TraceState() }
    expect(eventTraceOf(span, undefined, start)).toEqual({
      traceparent: UNSAMPLED,
      tracestate: undefined,
      parentSpanId: undefined,
      spanStart: "1772366400123456789"
    })
  })
})

describe("spanStartNow", () => {
  it("gives a 19-digit epoch-nanosecond string equal to its HrTime", () => {
    const start = spanStartNow()
    const [seconds, nanos] = start.hr
    expect(start.nanos).toMatch(/^\d{19}$/)
    expect(Number.isInteger(seconds)).toBe(true)
    expect(Number.isInteger(nanos)).toBe(true)
    expect(nanos).toBeGreaterThanOrEqual(0)
    expect(nanos).toBeLessThanOrEqual(999_999_999)
    expect(BigInt(start.nanos)).toBe(BigInt(seconds) * 1_000_000_000n + BigInt(nanos))
  })

  it("is close to the wall clock", () => {
    const before = Date.now()
    const start = spanStartNow()
    const after = Date.now()
    const ms = Number(BigInt(start.nanos) / 1_000_000n)
    expect(ms).toBeGreaterThanOrEqual(before - 1000)
    expect(ms).toBeLessThanOrEqual(after + 1000)
  })

  it("agrees with the system clock to a few microseconds, where Node's performance clock ran 12-25 µs ahead", () => {
    // Read just before and just after Date.now() ticks, a clock that agrees with it reads the
    // tick's millisecond give or take one turn of this loop; the median over 50 ticks leaves out
    // a turn the scheduler stretched.
    const offsets: Array<number> = []
    let last = Date.now()
    while (offsets.length < 50) {
      const ours = wallClockMs()
      const system = Date.now()
      if (system !== last) offsets.push(ours - system)
      last = system
    }
    offsets.sort((a, b) => a - b)
    const median = offsets[25] ?? Number.NaN
    // Ahead would let a span start "after" the server stored its event; a little behind is harmless.
    expect(median * 1000).toBeLessThanOrEqual(5)
    expect(median * 1000).toBeGreaterThanOrEqual(-50)
  })

  it("never goes backwards between calls", () => {
    const starts = Array.from({ length: 1000 }, () => BigInt(spanStartNow().nanos))
    for (let i = 1; i < starts.length; i++) expect(starts[i]).toBeGreaterThanOrEqual(starts[i - 1] ?? 0n)
  })
})
