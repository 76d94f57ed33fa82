/**
 * A LogRecord straight from the bytes of a delivered message: the header lines are scanned in
 * place and only the values replay reads become strings. This is the per-event cost of an audit
 * (measured: the header block as one string searched six times cost twice as much), so it is
 * written for speed; records.ts has the plain version the nats.js reader and direct gets use.
 */
import { HEADERS } from "../tracing/conventions.js"
import type { LogRecord } from "./model.js"
import { isValidTraceparent, makeRecord, parseHeaderBlock, type BodyPolicy } from "./records.js"

const CR = 0x0d
const COLON = 0x3a
const SPACE = 0x20

const keyBytes = (key: string): Buffer => Buffer.from(key, "latin1")
const K_EVENT = keyBytes(HEADERS.event)
const K_TRACEPARENT = keyBytes(HEADERS.traceparent)
const K_TRACESTATE = keyBytes(HEADERS.tracestate)
const K_PARENT = keyBytes(HEADERS.parentSpan)
const K_START = keyBytes(HEADERS.spanStart)
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
 * The record of a message whose headers are b[start, headerEnd) and body b[headerEnd, end).
 * Falls back to the string parser when a header name is spelled in another case.
 */
export const recordFromWire = (b: Buffer, start: number, headerEnd: number, end: number, seq: number, subject: string, timeNs: string, bodies: BodyPolicy): LogRecord => {
  let type = ""
  let traceparent: string | undefined
  let tracestate: string | undefined
  let parentSpanId: string | undefined
  let spanStart: string | undefined
  let prevSeq: string | undefined
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
      if (keyLength === K_EVENT.length && sameKey(b, p, K_EVENT)) type = latin1(b, v, w)
      else if (keyLength === K_TRACEPARENT.length && sameKey(b, p, K_TRACEPARENT)) traceparent = latin1(b, v, w)
      else if (keyLength === K_TRACESTATE.length && sameKey(b, p, K_TRACESTATE)) tracestate = latin1(b, v, w)
      else if (keyLength === K_PARENT.length && sameKey(b, p, K_PARENT)) parentSpanId = latin1(b, v, w)
      else if (keyLength === K_START.length && sameKey(b, p, K_START)) spanStart = latin1(b, v, w)
      else if (keyLength === K_PREV.length && sameKey(b, p, K_PREV)) prevSeq = latin1(b, v, w)
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
  const prev = prevSeq === undefined ? Number.NaN : Number(prevSeq)
  return {
    seq,
    subject,
    type,
    traceparent,
    traceId: tp?.slice(3, 35),
    spanId: tp?.slice(36, 52),
    traceFlags: tp === undefined ? 0 : hexValue(tp.charCodeAt(53)) * 16 + hexValue(tp.charCodeAt(54)),
    tracestate,
    parentSpanId,
    spanStart,
    prevSeq: Number.isSafeInteger(prev) ? prev : undefined,
    timeNs,
    body,
    bodyError
  }
}
