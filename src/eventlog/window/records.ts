/**
 * Turning what the server sends into LogRecords, cheaply: replay reads a million events in
 * seconds, so a header block is searched for the few headers replay reads (no header object, no
 * map), the traceparent is checked by hand, and a body is parsed only when it is needed.
 */
import { parseTraceparent } from "../../tracing/codec.js"
import type { HeaderFields } from "../rawHeaders.js"

/** One event of the log as replay reads it. */
export interface LogRecord {
  /** Stream sequence. */
  readonly seq: number
  /** `<root>.evt.<tenant>.<taskId>`: the task's subject (see `taskOfSubject`). */
  readonly subject: string
  /** The `Codeq-Event` header; "" when absent. */
  readonly type: string
  readonly traceparent: string | undefined
  /** From the traceparent; undefined when it is missing or invalid. */
  readonly traceId: string | undefined
  readonly spanId: string | undefined
  /** W3C trace flags as recorded (all eight bits); 0 without a valid traceparent. */
  readonly traceFlags: number
  readonly tracestate: string | undefined
  /** W3C baggage the create received (on a TaskCreated only). */
  readonly baggage: string | undefined
  /** `Codeq-Parent-Span`: the writing span's parent span id. */
  readonly parentSpanId: string | undefined
  /** `Codeq-Span-Start`: the writing span's start (epoch ns). */
  readonly spanStart: string | undefined
  /** `Codeq-Span-End`: the writing span's end (epoch ns); absent on events written before it. */
  readonly spanEnd: string | undefined
  /** `Codeq-Prev-Seq`: the task's previous event this one was appended after. */
  readonly prevSeq: number | undefined
  /** The log timestamp (epoch ns): the writing span's end. */
  readonly timeNs: string
  /**
   * The body parsed as JSON when the reader kept it (every body when spans are rebuilt; only the
   * bodies that decide a task's end when auditing), else undefined.
   */
  readonly body: unknown
  /** Why the body could not be parsed, when it could not. */
  readonly bodyError: string | undefined
}


/**
 * Whether records carry what only a rebuilt span shows — the traceparent as text (a malformed one
 * is always kept), tracestate, baggage and `Codeq-Span-End` — or leave them undefined: an audit
 * checks ids and starts, and three strings fewer an event is ~5 % of it.
 */
export type HeaderPolicy = "spans" | "audit"

/**
 * Which bodies to parse: all (rebuilding spans), or those the predicate asks for — given the
 * event type and the raw body, b[from, to) — when only the trace headers matter (an audit).
 */
export type BodyPolicy = "all" | ((type: string, b: Uint8Array, from: number, to: number) => boolean)

/** `<root>.evt.<tenant>.<taskId>` → tenant and task id (the last two tokens). */
export const taskOfSubject = (subject: string): { readonly tenant: string; readonly taskId: string } => {
  const last = subject.lastIndexOf(".")
  const before = subject.lastIndexOf(".", last - 1)
  return { tenant: subject.slice(before + 1, last), taskId: subject.slice(last + 1) }
}

const isLowerHex = (s: string, from: number, to: number): boolean => {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i)
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false
  }
  return true
}

const allZero = (s: string, from: number, to: number): boolean => {
  for (let i = from; i < to; i++) if (s.charCodeAt(i) !== 48) return false
  return true
}

/** A 16-hex-digit span id, not all zero. */
export const isSpanId = (s: string): boolean => s.length === 16 && isLowerHex(s, 0, 16) && !allZero(s, 0, 16)

export { isNanos } from "../acks.js"

/** 1 for the bytes of a lower-case hex digit. */
const HEX = new Uint8Array(256)
for (const c of "0123456789abcdef") HEX[c.charCodeAt(0)] = 1

/**
 * Whether b[from, to) is a valid W3C traceparent: `vv-<32 hex>-<16 hex>-ff`, version ff refused,
 * version 00 exactly 55 characters (later versions may carry more after a dash), ids not all zero.
 * On bytes: the wire reader checks one per event of an audit where it lies, before making a string.
 * The same rules as `parseTraceparent` (tracing/codec.ts), which checks a string.
 */
export const isValidTraceparentAt = (b: Uint8Array, from: number, to: number): boolean => {
  const length = to - from
  if (length < 55 || b[from + 2] !== 45 || b[from + 35] !== 45 || b[from + 52] !== 45) return false
  // One pass over the 51 hex digits: every one a lower-case hex digit, the ids not all zeros (48 is "0").
  let ok = HEX[b[from] ?? 0]! & HEX[b[from + 1] ?? 0]! & HEX[b[from + 53] ?? 0]! & HEX[b[from + 54] ?? 0]!
  let trace = 0
  for (let i = from + 3; i < from + 35; i++) {
    const c = b[i] ?? 0
    ok &= HEX[c]!
    trace |= c ^ 48
  }
  let span = 0
  for (let i = from + 36; i < from + 52; i++) {
    const c = b[i] ?? 0
    ok &= HEX[c]!
    span |= c ^ 48
  }
  if (ok === 0 || trace === 0 || span === 0) return false
  const version = ((b[from] ?? 0) << 8) | (b[from + 1] ?? 0)
  if (version === 0x6666 /* ff */) return false
  return length === 55 || (version !== 0x3030 /* 00 */ && b[from + 55] === 45)
}

const decoder = new TextDecoder()

/** Builds a record; parses the body as JSON when the policy wants it. */
export const makeRecord = (seq: number, subject: string, timeNs: string, h: HeaderFields, data: Uint8Array, bodies: BodyPolicy): LogRecord => {
  let body: unknown = undefined
  let bodyError: string | undefined = undefined
  // Without the header, the body says which event this is: it is read whatever the policy.
  if (bodies === "all" || h.type === "" || bodies(h.type, data, 0, data.length)) {
    try {
      body = JSON.parse(decoder.decode(data))
    } catch {
      bodyError = "body is not JSON"
    }
  }
  const prev = h.prevSeq === undefined ? Number.NaN : Number(h.prevSeq)
  const type = h.type !== "" ? h.type : typeof body === "object" && body !== null && "type" in body && typeof body.type === "string" ? body.type : ""
  const span = parseTraceparent(h.traceparent)
  return {
    seq,
    subject,
    type,
    traceparent: h.traceparent,
    traceId: span?.traceId,
    spanId: span?.spanId,
    traceFlags: span?.traceFlags ?? 0,
    tracestate: h.tracestate,
    baggage: h.baggage,
    parentSpanId: h.parentSpanId,
    spanStart: h.spanStart,
    spanEnd: h.spanEnd,
    prevSeq: Number.isSafeInteger(prev) ? prev : undefined,
    timeNs,
    body,
    bodyError
  }
}

const RFC3339 = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/

/** `2024-05-01T12:00:00.123456789Z` (the server's `Nats-Time-Stamp`) → epoch ns; undefined when malformed. */
export const nsFromRfc3339 = (text: string): string | undefined => {
  const m = RFC3339.exec(text.trim())
  if (m === null) return undefined
  const ms = Date.parse(`${m[1]}${m[3]}`)
  if (!Number.isFinite(ms)) return undefined
  return `${Math.floor(ms / 1000)}${(m[2] ?? "").padEnd(9, "0")}`
}
