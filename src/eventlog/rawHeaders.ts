/**
 * A delivered message's header block as the server sent it, read without nats.js's header object.
 *
 * Asking a nats.js message for `headers` decodes the whole block into a `MsgHdrsImpl` — every line
 * canonicalised and searched for on append, every `get`/`has` a copy of the key list. In the
 * broker that was a tenth of its CPU (three events per task through the event feed, profiled),
 * and the status check of every claim delivery paid it too. Here the block's bytes become one
 * string and the few headers read are found in it (`parseHeaderBlock`, shared with replay).
 *
 * The bytes are taken from the nats.js message's own fields (`_rdata`, `_msg.hdr`, nats.js 2.29);
 * when a message does not have them (another version, a message made by hand) the block is
 * written back from its decoded headers: the same text, only slower.
 */
import type { Msg, MsgHdrs } from "nats"
import { HEADERS } from "../tracing/conventions.js"

/** The fields of a nats.js 2.x `MsgImpl` this reads; checked before use. */
interface MsgInternals {
  readonly _rdata?: unknown
  readonly _msg?: { readonly hdr?: unknown }
}

const fromHeaders = (msg: Msg): string | undefined => {
  const h = msg.headers
  if (h === undefined) return undefined
  let block = h.code > 0 ? `NATS/1.0 ${h.code} ${h.description}\r\n` : "NATS/1.0\r\n"
  for (const [key, values] of h) for (const value of values) block += `${key}: ${value}\r\n`
  return `${block}\r\n`
}

/** The message's header block (`NATS/1.0[ code text]\r\nKey: value\r\n…`), undefined without headers. */
export const headerBlockOf = (msg: Msg): string | undefined => {
  const internals = msg as unknown as MsgInternals
  const data = internals._rdata
  const hdr = internals._msg?.hdr
  if (!(data instanceof Uint8Array) || typeof hdr !== "number") return fromHeaders(msg)
  if (hdr < 0) return undefined
  return Buffer.from(data.buffer, data.byteOffset, Math.min(hdr, data.byteLength)).toString("utf8")
}

/** The status code of a header block (`NATS/1.0 404 No Messages` → 404); 0 for none. */
export const statusCodeOf = (block: string | undefined): number => {
  if (block === undefined || block.charCodeAt(8) !== 32) return 0
  return Number.parseInt(block.slice(9, 12), 10) || 0
}

/** The headers replay reads, and the status code of a status message (404, 408, …). */
export interface HeaderFields {
  code: number
  type: string
  traceparent: string | undefined
  tracestate: string | undefined
  baggage: string | undefined
  parentSpanId: string | undefined
  spanStart: string | undefined
  spanEnd: string | undefined
  prevSeq: string | undefined
}

type Field = Exclude<keyof HeaderFields, "code">

const FIELDS: ReadonlyArray<readonly [string, Field]> = [
  [HEADERS.event, "type"],
  [HEADERS.traceparent, "traceparent"],
  [HEADERS.tracestate, "tracestate"],
  [HEADERS.baggage, "baggage"],
  [HEADERS.parentSpan, "parentSpanId"],
  [HEADERS.spanStart, "spanStart"],
  [HEADERS.spanEnd, "spanEnd"],
  [HEADERS.prevSeq, "prevSeq"]
]
const BY_LOWER: ReadonlyMap<string, Field> = new Map(FIELDS.map(([name, field]) => [name.toLowerCase(), field]))

/** The value after `needle` up to the end of its line, blanks trimmed; undefined when absent. */
const valueAfter = (text: string, needle: string): string | undefined => {
  const at = text.indexOf(needle)
  if (at < 0) return undefined
  let from = at + needle.length
  let end = text.indexOf("\r", from)
  if (end < 0) end = text.length
  while (from < end && text.charCodeAt(from) === 32) from++
  while (end > from && text.charCodeAt(end - 1) === 32) end--
  return text.slice(from, end)
}

const emptyFields = (code: number): HeaderFields => ({ code, type: "", traceparent: undefined, tracestate: undefined, baggage: undefined, parentSpanId: undefined, spanStart: undefined, spanEnd: undefined, prevSeq: undefined })

// Every header line follows a CRLF (the block starts with the `NATS/1.0` status line).

/** Header names are case-insensitive on the wire: the slow way, for a block spelled otherwise. */
const parseAnyCase = (text: string, out: HeaderFields): void => {
  for (const line of text.split("\r\n").slice(1)) {
    const colon = line.indexOf(":")
    if (colon <= 0) continue
    const field = BY_LOWER.get(line.slice(0, colon).trim().toLowerCase())
    if (field !== undefined && out[field] === undefined) out[field] = line.slice(colon + 1).trim()
    if (field === "type" && out.type === "") out.type = line.slice(colon + 1).trim()
  }
}

const N_EVENT = `\r\n${HEADERS.event}:`
const N_TRACEPARENT = `\r\n${HEADERS.traceparent}:`
const N_TRACESTATE = `\r\n${HEADERS.tracestate}:`
const N_BAGGAGE = `\r\n${HEADERS.baggage}:`
const N_PARENT = `\r\n${HEADERS.parentSpan}:`
const N_START = `\r\n${HEADERS.spanStart}:`
const N_END = `\r\n${HEADERS.spanEnd}:`
const N_PREV = `\r\n${HEADERS.prevSeq}:`

/** Parses a NATS header block (`NATS/1.0[ code text]\r\nKey: value\r\n…`). */
export const parseHeaderBlock = (text: string): HeaderFields => {
  const out: HeaderFields = {
    code: text.charCodeAt(8) === 32 ? Number.parseInt(text.slice(9, 12), 10) || 0 : 0,
    type: valueAfter(text, N_EVENT) ?? "",
    traceparent: valueAfter(text, N_TRACEPARENT),
    tracestate: valueAfter(text, N_TRACESTATE),
    baggage: valueAfter(text, N_BAGGAGE),
    parentSpanId: valueAfter(text, N_PARENT),
    spanStart: valueAfter(text, N_START),
    spanEnd: valueAfter(text, N_END),
    prevSeq: valueAfter(text, N_PREV)
  }
  if (out.type === "" || out.traceparent === undefined) parseAnyCase(text, out)
  return out
}

const FIELD_OF: ReadonlyMap<string, Field> = new Map(FIELDS.map(([name, field]) => [name, field]))

/**
 * One header of a block whose fields `parseHeaderBlock` read: a field it reads from `fields`, any
 * other header found in the block (exact name); undefined when absent.
 */
export const headerOfBlock = (block: string, fields: HeaderFields, key: string): string | undefined => {
  const field = FIELD_OF.get(key)
  if (field === undefined) return valueAfter(block, `\r\n${key}:`)
  const value = fields[field]
  return value === "" && field === "type" ? undefined : value
}

/** The same fields from a nats.js header object (the fallback reader and direct gets). */
export const headerFieldsOf = (headers: MsgHdrs | undefined): HeaderFields => {
  const out = emptyFields(headers?.code ?? 0)
  if (headers === undefined) return out
  for (const [key, values] of headers) {
    const field = BY_LOWER.get(key.toLowerCase())
    const value = values[0]
    if (field !== undefined && value !== undefined) out[field] = value.trim()
  }
  return out
}
