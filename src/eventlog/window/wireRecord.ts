/**
 * A LogRecord straight from the bytes of a delivered message — and its ack subject's sequence,
 * timestamp and pending count: the header lines are scanned in place and only the values replay
 * reads become strings. This is the per-event cost of an audit
 * (measured: the header block as one string searched six times cost twice as much), so it is
 * written for speed; records.ts has the plain version the nats.js reader and direct gets use.
 */
import { HEADERS } from "../../tracing/conventions.js"
import type { LogRecord } from "./records.js"
import { isValidTraceparent, makeRecord, parseHeaderBlock, type BodyPolicy } from "./records.js"

const CR = 0x0d
const COLON = 0x3a
const SPACE = 0x20

const keyBytes = (key: string): Buffer => Buffer.from(key, "latin1")
const K_EVENT = keyBytes(HEADERS.event)
const K_TRACEPARENT = keyBytes(HEADERS.traceparent)
const K_TRACESTATE = keyBytes(HEADERS.tracestate)
const K_BAGGAGE = keyBytes(HEADERS.baggage)
const K_PARENT = keyBytes(HEADERS.parentSpan)
const K_START = keyBytes(HEADERS.spanStart)
const K_END = keyBytes(HEADERS.spanEnd)
const K_PREV = keyBytes(HEADERS.prevSeq)

const sameKey = (b: Buffer, from: number, key: Buffer): boolean => {
  for (let i = key.length - 1; i >= 0; i--) if (b[from + i] !== key[i]) return false
  return true
}

const hexValue = (c: number): number => (c <= 57 ? c - 48 : c - 87)

type Latin1 = (b: Buffer, from: number, to: number) => string
/**
 * `buf.toString("latin1", from, to)` without its argument checks: Buffer's own latin1Slice, where
 * Node has it (every version codeq runs on). Eight strings an event, so the wrapper shows.
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
export const recordFromWire = (b: Buffer, start: number, headerEnd: number, end: number, seq: number, subject: string, timeNs: string, bodies: BodyPolicy): LogRecord => {
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
  // Skip the status line (NATS/1.0); then one "Key: value" per line until the blank one.
  let p = start
  while (p < headerEnd && b[p] !== CR) p++
  p += 2
  while (p < headerEnd) {
    let colon = -1
    let eol = p
    for (; eol < headerEnd && b[eol] !== CR; eol++) if (colon < 0 && b[eol] === COLON) colon = eol
    if (eol === p) break
    if (colon > p) {
      let v = colon + 1
      while (v < eol && b[v] === SPACE) v++
      let w = eol
      while (w > v && b[w - 1] === SPACE) w--
      const keyLength = colon - p
      if (keyLength === K_EVENT.length && sameKey(b, p, K_EVENT)) type = intern(b, v, w)
      else if (keyLength === K_TRACEPARENT.length && sameKey(b, p, K_TRACEPARENT)) {
        traceparent = latin1(b, v, w)
      }
      else if (keyLength === K_TRACESTATE.length && sameKey(b, p, K_TRACESTATE)) tracestate = latin1(b, v, w)
      else if (keyLength === K_BAGGAGE.length && sameKey(b, p, K_BAGGAGE)) baggage = latin1(b, v, w)
      else if (keyLength === K_PARENT.length && sameKey(b, p, K_PARENT)) parentSpanId = latin1(b, v, w)
      else if (keyLength === K_START.length && sameKey(b, p, K_START)) spanStart = latin1(b, v, w)
      else if (keyLength === K_END.length && sameKey(b, p, K_END)) spanEnd = latin1(b, v, w)
      else if (keyLength === K_PREV.length && sameKey(b, p, K_PREV)) {
        prevSeqNumber = decimal(b, v, w)
        // Anything but plain digits: read as the string parser reads it.
        if (Number.isNaN(prevSeqNumber)) prevSeq = latin1(b, v, w)
      }
      else if (b[p] !== 0x4e /* N: the server's own Nats-… headers */) odd = true
    }
    p = eol + 2
  }
  if (odd && (type === "" || traceparent === undefined)) {
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
  const tp = isValidTraceparent(traceparent) ? traceparent : undefined
  const prev = prevSeq === undefined ? prevSeqNumber : Number(prevSeq)
  return {
    seq,
    subject,
    type,
    traceparent,
    traceId: tp?.slice(3, 35),
    spanId: tp?.slice(36, 52),
    traceFlags: tp === undefined ? 0 : hexValue(tp.charCodeAt(53)) * 16 + hexValue(tp.charCodeAt(54)),
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
