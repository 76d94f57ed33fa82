/**
 * A record's span ids and times, and the nanosecond arithmetic replay needs.
 */
import type { HrTime } from "@opentelemetry/api"
import type { LogRecord, SpanCore } from "./model.js"
import { isNanos, isSpanId } from "../eventlog/window/records.js"

/**
 * The span that wrote `record`, from its headers; undefined without a valid traceparent. A span
 * start that is missing or malformed is taken as its end (the audit reports the header).
 */
export const spanCoreOf = (record: LogRecord): SpanCore | undefined => {
  if (record.traceId === undefined || record.spanId === undefined) return undefined
  const start = record.spanStart !== undefined && isNanos(record.spanStart) ? record.spanStart : record.timeNs
  const parent = record.parentSpanId !== undefined && isSpanId(record.parentSpanId) ? record.parentSpanId : undefined
  return {
    seq: record.seq,
    event: record.type,
    traceId: record.traceId,
    spanId: record.spanId,
    traceFlags: record.traceFlags,
    traceState: record.tracestate,
    parentSpanId: parent,
    startNs: start,
    // The span's own end when the event says it (and it is not before the start), else the log's time.
    endNs: record.spanEnd !== undefined && isNanos(record.spanEnd) && compareNs(record.spanEnd, start) >= 0 ? record.spanEnd : record.timeNs
  }
}

/** Compares two epoch-ns decimal strings (no leading zeros): negative, zero or positive. */
export const compareNs = (a: string, b: string): number => (a.length !== b.length ? a.length - b.length : a < b ? -1 : a > b ? 1 : 0)

/** `a − b` in milliseconds (fractional, exact to the nanosecond for any span length). */
export const msBetween = (a: string, b: string): number => Number(BigInt(a) - BigInt(b)) / 1e6

/** Epoch ns → OpenTelemetry HrTime. */
export const hrTimeOf = (ns: string): HrTime => {
  const cut = Math.max(0, ns.length - 9)
  return [Number(ns.slice(0, cut) || "0"), Number(ns.slice(cut))]
}

/** Epoch ms (a Date) → epoch ns. */
export const nsFromMs = (ms: number): string => `${BigInt(Math.floor(ms)) * 1_000_000n + BigInt(Math.round((ms - Math.floor(ms)) * 1e6))}`

/** Epoch ns → ISO 8601 with the nanoseconds kept. */
export const isoFromNs = (ns: string): string => {
  const cut = Math.max(0, ns.length - 9)
  const seconds = Number(ns.slice(0, cut) || "0")
  return `${new Date(seconds * 1000).toISOString().slice(0, 19)}.${ns.slice(cut).padStart(9, "0")}Z`
}
