/**
 * A LogRecord straight from the bytes of a delivered message — and its ack subject's sequence,
 * timestamp and pending count: the header lines are scanned in place and only the values replay
 * reads become strings. This is the per-event cost of an audit
 * (measured: the header block as one string searched six times cost twice as much), so it is
 * written for speed; records.ts has the plain version the nats.js reader and direct gets use.
 */
import { HEADERS } from "../../tracing/conventions.js"
import type { LogRecord } from "./records.js"
import { parseHeaderBlock } from "../rawHeaders.js"
import { isValidTraceparentAt, makeRecord, type BodyPolicy, type HeaderPolicy } from "./records.js"

const CR = 0x0d
const COLON = 0x3a
const SPACE = 0x20

/** The headers replay reads, by index; their names as bytes; the length of a value when it has one. */
const F_EVENT = 0
const F_TRACEPARENT = 1
const F_TRACESTATE = 2
const F_BAGGAGE = 3
const F_PARENT = 4
const F_START = 5
const F_END = 6
const F_PREV = 7
const KEYS: ReadonlyArray<Buffer> = [HEADERS.event, HEADERS.traceparent, HEADERS.tracestate, HEADERS.baggage, HEADERS.parentSpan, HEADERS.spanStart, HEADERS.spanEnd, HEADERS.prevSeq].map((key) => Buffer.from(key, "latin1"))

const sameKey = (b: Buffer, from: number, key: Buffer): boolean => {
  for (let i = key.length - 1; i >= 0; i--) if (b[from + i] !== key[i]) return false
  return true
}

/** Which of KEYS the header line at p names (followed by its colon); -1 for any other line. */
const keyAt = (b: Buffer, p: number): number => {
  let f = -1
  const c = b[p]
  // Told apart by a byte or two, then compared whole.
  if (c === 0x43 /* Codeq-… */) {
    const d = b[p + 6]
    f = d === 0x45 ? F_EVENT : d === 0x50 ? (b[p + 7] === 0x61 ? F_PARENT : F_PREV) : d === 0x53 ? (b[p + 11] === 0x53 ? F_START : F_END) : -1
  } else if (c === 0x74 /* trace… */) f = b[p + 5] === 0x70 ? F_TRACEPARENT : F_TRACESTATE
  else if (c === 0x62 /* baggage */) f = F_BAGGAGE
  if (f < 0) return -1
  const key = KEYS[f] as Buffer
  return b[p + key.length] === COLON && sameKey(b, p, key) ? f : -1
}

/**
 * Where the value of the server's header at p starts — past `Nats-Expected-Stream:` or
 * `Nats-Expected-Last-Subject-Sequence:`, on every event — or p for any other.
 */
const pastNatsKey = (b: Buffer, p: number): number => {
  const d = b[p + 14]
  if (d === 0x53 /* S */ && b[p + 20] === COLON) return p + 21
  if (d === 0x4c /* L */ && b[p + 35] === COLON) return p + 36
  return p
}

/** Where the line holding i ends (its CR), or `limit`. */
const lineEnd = (b: Buffer, i: number, limit: number): number => {
  while (i < limit && b[i] !== CR) i++
  return i
}

const hexValue = (c: number): number => (c <= 57 ? c - 48 : c - 87)

type Latin1 = (b: Buffer, from: number, to: number) => string
/**
 * `buf.toString("latin1", from, to)` without its argument checks: Buffer's own latin1Slice, where
 * Node has it (every version codeq runs on). Several strings an event, so the wrapper shows.
 */
export const latin1: Latin1 =
  typeof (Buffer.prototype as unknown as { latin1Slice?: unknown }).latin1Slice === "function"
    ? (b, from, to) => (b as unknown as { latin1Slice(from: number, to: number): string }).latin1Slice(from, to)
    : (b, from, to) => b.toString("latin1", from, to)

/**
 * The same string for the same bytes, from a small cache: an event type repeats on every event,
 * so it is made once rather than once per event. A collision only costs a miss.
 */
const interned: Array<{ readonly bytes: Buffer; readonly text: string } | undefined> = new Array(128)
const intern = (b: Buffer, from: number, to: number): string => {
  let h = to - from
  for (let i = from; i < to; i++) h = (h * 31 + (b[i] ?? 0)) & 127
  const hit = interned[h]
  if (hit !== undefined && hit.bytes.length === to - from) {
    let same = true
    for (let i = 0; same && i < hit.bytes.length; i++) same = hit.bytes[i] === b[from + i]
    if (same) return hit.text
  }
  const text = latin1(b, from, to)
  interned[h] = { bytes: Buffer.from(text, "latin1"), text }
  return text
}

/** A decimal header value as a number (no string made); NaN unless it is 1 to 15 digits. */
const decimal = (b: Buffer, from: number, to: number): number => {
  if (to <= from || to - from > 15) return Number.NaN
  let n = 0
  for (let i = from; i < to; i++) {
    const c = b[i] ?? 0
    if (c < 48 || c > 57) return Number.NaN
    n = n * 10 + (c - 48)
  }
  return n
}

/**
 * The record of a message whose headers are b[start, headerEnd) and body b[headerEnd, end).
 * Falls back to the string parser when a header name is spelled in another case.
 */
export const recordFromWire = (
  b: Buffer,
  start: number,
  headerEnd: number,
  end: number,
  seq: number,
  subject: string,
  timeNs: string,
  bodies: BodyPolicy,
  headers: HeaderPolicy
): LogRecord => {
  const spans = headers === "spans"
  let type = ""
  let traceparent: string | undefined
  let tracestate: string | undefined
  let baggage: string | undefined
  let parentSpanId: string | undefined
  let spanStart: string | undefined
  let spanEnd: string | undefined
  let prevSeq: string | undefined
  let prevSeqNumber = Number.NaN
  let odd = false
  let traceId: string | undefined
  let spanId: string | undefined
  let traceFlags = 0
  let sawTraceparent = false
  // Skip the status line (NATS/1.0); then one "Key: value" per line until the blank one. A line is
  // told by its first bytes, the server's own keys are skipped whole, and only a value is scanned
  // for its end: this loop runs over a million header blocks.
  let p = lineEnd(b, start, headerEnd) + 2
  while (p < headerEnd && b[p] !== CR) {
    const f = keyAt(b, p)
    if (f < 0) {
      // The server's own Nats-… headers are skipped; another may be ours spelled in another case.
      const natsKey = b[p] === 0x4e /* N */
      if (!natsKey) odd = true
      p = lineEnd(b, natsKey ? pastNatsKey(b, p) : p, headerEnd) + 2
      continue
    }
    let v = p + (KEYS[f] as Buffer).length + 1
    while (v < headerEnd && b[v] === SPACE) v++
    const eol = lineEnd(b, v, headerEnd)
    let w = eol
    while (w > v && b[w - 1] === SPACE) w--
    switch (f) {
      case F_EVENT:
        type = intern(b, v, w)
        break
      case F_TRACEPARENT: {
        sawTraceparent = true
        const valid = isValidTraceparentAt(b, v, w)
        if (spans || !valid) traceparent = latin1(b, v, w)
        traceId = valid ? latin1(b, v + 3, v + 35) : undefined
        spanId = valid ? latin1(b, v + 36, v + 52) : undefined
        traceFlags = valid ? hexValue(b[v + 53] ?? 48) * 16 + hexValue(b[v + 54] ?? 48) : 0
        break
      }
      case F_TRACESTATE:
        if (spans) tracestate = latin1(b, v, w)
        break
      case F_BAGGAGE:
        if (spans) baggage = latin1(b, v, w)
        break
      case F_PARENT:
        parentSpanId = latin1(b, v, w)
        break
      case F_START:
        spanStart = latin1(b, v, w)
        break
      case F_END:
        if (spans) spanEnd = latin1(b, v, w)
        break
      default:
        prevSeqNumber = decimal(b, v, w)
        // Anything but plain digits: read as the string parser reads it.
        if (Number.isNaN(prevSeqNumber)) prevSeq = latin1(b, v, w)
    }
    p = eol + 2
  }
  if (odd && (type === "" || !sawTraceparent)) {
    // A header we read may be spelled in another case: the careful parser decides.
    return makeRecord(seq, subject, timeNs, parseHeaderBlock(b.toString("latin1", start, headerEnd)), b.subarray(headerEnd, end), bodies)
  }
  let body: unknown = undefined
  let bodyError: string | undefined = undefined
  if (bodies === "all" || type === "" || bodies(type, b, headerEnd, end)) {
    try {
      body = JSON.parse(b.toString("utf8", headerEnd, end))
    } catch {
      bodyError = "body is not JSON"
    }
    if (type === "" && typeof body === "object" && body !== null && "type" in body && typeof body.type === "string") type = body.type
  }
  const prev = prevSeq === undefined ? prevSeqNumber : Number(prevSeq)
  return {
    seq,
    subject,
    type,
    traceparent,
    traceId,
    spanId,
    traceFlags,
    tracestate,
    baggage,
    parentSpanId,
    spanStart,
    spanEnd,
    prevSeq: Number.isSafeInteger(prev) ? prev : undefined,
    timeNs,
    body,
    bodyError
  }
}

const dots = new Int32Array(16)

/** Bytes the first line or message of b takes (control line, payload, CRLF); -1 when its line is cut. */
export const lengthOfFirst = (b: Buffer): number => {
  const eol = b.indexOf(CR)
  if (eol < 0 || eol + 1 >= b.length) return -1
  if (b[0] !== 0x48 && b[0] !== 0x4d) return eol + 2
  let total = 0
  for (let k = eol - 1, m = 1; k > 0 && b[k] !== 32; k--, m *= 10) total += ((b[k] ?? 48) - 48) * m
  return eol + 2 + total + 2
}

const digits = (b: Buffer, from: number, to: number): number => {
  let n = 0
  for (let i = from; i < to; i++) n = n * 10 + ((b[i] ?? 48) - 48)
  return n
}

/**
 * `$JS.ACK.…` in b[from, to) → sequence, timestamp and pending, written into `into` (one object
 * reused for every message); false when it is not an ack subject. `parseAck` (acks.ts) reads the
 * same from a string. Tokens (dot-separated) are located once; no string but the timestamp is made.
 */
export const parseAckInto = (b: Buffer, from: number, to: number, into: { seq: number; timeNs: string; pending: number }): boolean => {
  // "$JS.ACK."
  if (to - from < 8 || b[from] !== 0x24 || b[from + 1] !== 0x4a || b[from + 4] !== 0x41) return false
  let count = 0
  for (let i = from; i < to && count < dots.length; i++) if (b[i] === 0x2e) dots[count++] = i
  if (count < 8) return false
  // v1: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending> (8 dots); v2 adds a
  // domain and an account hash before the stream, and a token at the end (11 dots or more).
  const offset = count >= 11 ? 4 : 2
  // Token t lies between dot t-1 and dot t (or the end).
  const seqFrom = (dots[offset + 2] ?? 0) + 1
  const seqTo = dots[offset + 3] ?? to
  const tsFrom = (dots[offset + 4] ?? 0) + 1
  const tsTo = dots[offset + 5] ?? to
  const pendingFrom = (dots[offset + 5] ?? 0) + 1
  const pendingTo = offset + 6 < count ? (dots[offset + 6] ?? to) : to
  into.seq = digits(b, seqFrom, seqTo)
  into.timeNs = latin1(b, tsFrom, tsTo)
  into.pending = digits(b, pendingFrom, pendingTo)
  return true
}
