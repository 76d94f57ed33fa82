/**
 * The pure trace header codec: W3C `traceparent` parsing and formatting, and the mapping between
 * a span and the trace headers it leaves on the event it writes (DESIGN §2).
 */
import { ROOT_CONTEXT, TraceFlags, trace, type Context, type SpanContext } from "@opentelemetry/api"
import type { EventTrace } from "../domain/events.js"
import { HEADERS } from "./conventions.js"
import { W3CTraceState } from "./tracestate.js"

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/
const ZERO_TRACE = "0".repeat(32)
const ZERO_SPAN = "0".repeat(16)

/**
 * Parses a W3C traceparent; undefined when malformed or all-zero (as the spec says to ignore).
 * The flags are kept whole: besides `sampled`, Level 2's `random` (02) and any later flag.
 */
export const parseTraceparent = (value: string | undefined, tracestate?: string): SpanContext | undefined => {
  if (value === undefined) return undefined
  const match = TRACEPARENT.exec(value.trim())
  if (match === null) return undefined
  const [, version, traceId, spanId, flags, rest] = match
  if (version === "ff" || (version === "00" && rest !== undefined)) return undefined
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN || traceId === undefined || spanId === undefined) return undefined
  const ctx: SpanContext = {
    traceId,
    spanId,
    traceFlags: Number.parseInt(flags ?? "00", 16),
    isRemote: true
  }
  return tracestate !== undefined && tracestate !== "" ? { ...ctx, traceState: W3CTraceState.parse(tracestate) } : ctx
}

export const isValidTraceparent = (value: string | undefined): boolean => parseTraceparent(value) !== undefined

export const formatTraceparent = (ctx: SpanContext): string => `00-${ctx.traceId}-${ctx.spanId}-${(ctx.traceFlags & 0xff).toString(16).padStart(2, "0")}`

/**
 * A span's flags as its events carry them: the sampling decision is the span's own, every other
 * flag (Level 2's `random`) is the trace's and comes from the parent — the SDK knows only
 * `sampled` and would drop the rest.
 */
export const traceFlagsOf = (span: SpanContext, parent: SpanContext | undefined): number =>
  (span.traceFlags & TraceFlags.SAMPLED) | ((parent?.traceFlags ?? 0) & ~TraceFlags.SAMPLED & 0xff)

/** An OpenTelemetry context whose remote parent is the given persisted trace context. */
export const contextFromTraceparent = (traceparent: string | undefined, tracestate?: string): Context => {
  const parent = parseTraceparent(traceparent, tracestate)
  return parent === undefined ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, parent)
}

/** Start time as OpenTelemetry HrTime plus the same instant as epoch nanoseconds. */
export interface SpanStart {
  readonly hr: [number, number]
  readonly nanos: string
}

/** How often the lead over the system clock is measured again: it moves as NTP slews the clock. */
const MEASURE_EVERY_MS = 60_000
/**
 * How fast a larger lead is taken on, in ms per ms (20 µs a second), so that time never runs
 * backwards; a smaller one is taken at once (time jumps forward).
 */
const LEAD_RISE_PER_MS = 20e-6

/**
 * How far `performance.timeOrigin + performance.now()` runs ahead of the system clock (ms).
 * `Date.now()` ticks once a millisecond: read just after a tick, it is behind the true time by at
 * most a turn of this loop, and `performance.now()` read right after it can only add to the lead
 * measured — so the smallest over three ticks is the lead to a fraction of a microsecond, or a
 * little more (never less). Spins until three ticks, at most 4 ms.
 */
const measureLead = (): number => {
  let best = Number.POSITIVE_INFINITY
  let ticks = 0
  let last = Date.now()
  const deadline = performance.now() + 4
  while (ticks < 3) {
    const wall = Date.now()
    const mono = performance.now()
    if (wall !== last) {
      best = Math.min(best, performance.timeOrigin + mono - wall)
      ticks++
      last = wall
    }
    if (mono > deadline) break
  }
  return Number.isFinite(best) ? best : performance.timeOrigin + performance.now() - Date.now()
}

let leadMs: number | undefined
/** The lead last measured, taken on gradually when it is larger than `leadMs`. */
let targetLeadMs = 0
let measuredAt = Number.NEGATIVE_INFINITY
let leadAt = 0

/**
 * Now on the system's wall clock, to a fraction of a millisecond (epoch ms).
 *
 * WHY not `performance.timeOrigin + performance.now()` alone: Node fixes the origin once, at
 * start, and it came out 12–25 µs ahead of the system clock in every process measured here, and
 * it follows neither NTP's slewing nor a step. A span then could start "after" the server stored
 * its event on the same host: `codeq replay --audit` reported "TaskClaimed starts 0.027 ms after
 * it was stored" in a CI run. The lead is measured (`measureLead`) at the first reading and every
 * minute after, and taken off; each reading can only lower it.
 */
export const wallClockMs = (): number => {
  // Date.now() first: read before the fine clock, it makes every reading a bound on the lead too.
  const wall = Date.now()
  const mono = performance.now()
  if (mono - measuredAt >= MEASURE_EVERY_MS) {
    targetLeadMs = measureLead()
    measuredAt = performance.now()
    if (leadMs === undefined || targetLeadMs < leadMs) leadMs = targetLeadMs
  } else if (leadMs !== undefined && leadMs < targetLeadMs) leadMs = Math.min(targetLeadMs, leadMs + (mono - leadAt) * LEAD_RISE_PER_MS)
  leadAt = mono
  const fine = performance.timeOrigin + mono
  // Date.now() is never ahead of the true time, and was read before `mono`: `fine − wall` is at
  // least the lead. A measurement the scheduler stretched, which can only have made the lead look
  // larger, is so corrected by the next readings.
  const bound = fine - wall
  if (leadMs === undefined || bound < leadMs) {
    leadMs = bound
    if (bound < targetLeadMs) targetLeadMs = bound
  }
  return fine - leadMs
}

/** Now as an OpenTelemetry HrTime, on `wallClockMs`. */
export const hrWallClock = (): [number, number] => {
  const ms = wallClockMs()
  const seconds = Math.floor(ms / 1000)
  return [seconds, Math.min(999_999_999, Math.round((ms - seconds * 1000) * 1e6))]
}

export const spanStartNow = (): SpanStart => {
  const hr = hrWallClock()
  return { hr, nanos: `${hr[0]}${String(hr[1]).padStart(9, "0")}` }
}

/** What a span leaves on the event it writes. */
export const eventTraceOf = (span: SpanContext, parent: SpanContext | undefined, start: SpanStart, baggage?: string): EventTrace => ({
  traceparent: formatTraceparent({ ...span, traceFlags: traceFlagsOf(span, parent) }),
  tracestate: span.traceState?.serialize() || undefined,
  parentSpanId: parent?.spanId,
  spanStart: start.nanos,
  ...(baggage !== undefined && baggage !== "" ? { baggage } : {})
})

/** Writes an event's trace onto a header setter. */
export const writeTraceHeaders = (trace: EventTrace, set: (key: string, value: string) => void): void => {
  set(HEADERS.traceparent, trace.traceparent)
  if (trace.tracestate !== undefined) set(HEADERS.tracestate, trace.tracestate)
  if (trace.baggage !== undefined) set(HEADERS.baggage, trace.baggage)
  if (trace.parentSpanId !== undefined) set(HEADERS.parentSpan, trace.parentSpanId)
  if (trace.spanStart !== undefined) set(HEADERS.spanStart, trace.spanStart)
  if (trace.spanEnd !== undefined) set(HEADERS.spanEnd, trace.spanEnd)
}

/** Reads an event's trace from a header getter; undefined without a traceparent. */
export const readTraceHeaders = (get: (key: string) => string | undefined): EventTrace | undefined => {
  const traceparent = get(HEADERS.traceparent)
  if (traceparent === undefined || traceparent === "") return undefined
  const blankToUndefined = (value: string | undefined) => (value === undefined || value === "" ? undefined : value)
  const baggage = blankToUndefined(get(HEADERS.baggage))
  const spanEnd = blankToUndefined(get(HEADERS.spanEnd))
  return {
    traceparent,
    tracestate: blankToUndefined(get(HEADERS.tracestate)),
    parentSpanId: blankToUndefined(get(HEADERS.parentSpan)),
    spanStart: blankToUndefined(get(HEADERS.spanStart)),
    ...(spanEnd !== undefined ? { spanEnd } : {}),
    ...(baggage !== undefined ? { baggage } : {})
  }
}
