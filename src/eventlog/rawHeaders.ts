/**
 * A delivered message's header block as the server sent it, read without nats.js's header object.
 *
 * Asking a nats.js message for `headers` decodes the whole block into a `MsgHdrsImpl` — every line
 * canonicalised and searched for on append, every `get`/`has` a copy of the key list. In the
 * broker that was a tenth of its CPU (three events per task through the event feed, profiled),
 * and the status check of every claim delivery paid it too. Here the block's bytes become one
 * string and the few headers read are found in it (`parseHeaderBlock`, shared with replay), and a
 * status is read from the first bytes alone. Every reader of the log reads headers this way: the
 * event feed, direct gets of a task's history and of key-value entries, and replay's readers.
 *
 * The bytes are taken from the nats.js message's own fields (`_rdata`, `_msg.hdr`, nats.js 2.29);
 * when a message does not have them (another version, a message made by hand) the block is
 * written back from its decoded headers: the same text, only slower.
 */
import type { Msg } from "nats"
import { HEADERS } from "../tracing/conventions.js"

/** The fields of a nats.js 2.x `MsgImpl` this reads; checked before use. */
interface MsgInternals {
  readonly _rdata?: unknown
  readonly _msg?: { readonly hdr?: unknown }
}

/**
 * The message's bytes and where its body starts (-1: no headers), from nats.js's own fields; undefined
 * when it has none of them. WHY the cast: nats.js keeps the received bytes but exposes only the
 * decoded headers, and decoding them was the cost this module exists to avoid.
 */
const rawOf = (msg: Msg): { readonly data: Uint8Array; readonly hdr: number } | undefined => {
  const internals = msg as unknown as MsgInternals
  const data = internals._rdata
  const hdr = internals._msg?.hdr
  return data instanceof Uint8Array && typeof hdr === "number" ? { data, hdr: Math.min(hdr, data.byteLength) } : undefined
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
  const raw = rawOf(msg)
  if (raw === undefined) return fromHeaders(msg)
  if (raw.hdr < 0) return undefined
  return Buffer.from(raw.data.buffer, raw.data.byteOffset, raw.hdr).toString("utf8")
}

const isDigit = (c: number | undefined): c is number => c !== undefined && c >= 48 && c <= 57

/**
 * The status code of a message (`NATS/1.0 404 No Messages` → 404; 100 for an idle heartbeat), 0
 * for none — from the block's first bytes, without making a string of the rest.
 */
export const statusOfMessage = (msg: Msg): number => {
  const raw = rawOf(msg)
  if (raw === undefined) return msg.headers?.code ?? 0
  const d = raw.data
  if (raw.hdr < 12 || d[8] !== 32 || !isDigit(d[9]) || !isDigit(d[10]) || !isDigit(d[11])) return 0
  return (d[9] - 48) * 100 + (d[10] - 48) * 10 + (d[11] - 48)
}

/** The status code of a header block (`NATS/1.0 404 No Messages` → 404); 0 for none. */
export const statusCodeOf = (block: string | undefined): number => {
  if (block === undefined || block.charCodeAt(8) !== 32) return 0
  return Number.parseInt(block.slice(9, 12), 10) || 0
}

/** The status line after the version (`404 No Messages`), for an error message; "" for none. */
export const statusTextOf = (block: string): string => {
  const end = block.indexOf("\r")
  return block.slice(9, end < 0 ? block.length : end).trim()
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

/** Parses a NATS header block (`NATS/1.0[ code text]\r\nKey: value\r\n…`); no block, no fields. */
export const parseHeaderBlock = (text: string | undefined): HeaderFields => {
  if (text === undefined) return { code: 0, type: "", traceparent: undefined, tracestate: undefined, baggage: undefined, parentSpanId: undefined, spanStart: undefined, spanEnd: undefined, prevSeq: undefined }
  const out: HeaderFields = {
    code: statusCodeOf(text),
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

/** One header of a block by its exact name, blanks trimmed; undefined when absent. */
export const headerIn = (block: string, key: string): string | undefined => valueAfter(block, `\r\n${key}:`)

/**
 * A reader of a block's headers by name, its fields parsed once: the ones `parseHeaderBlock` reads
 * from them, any other found in the block (exact name); undefined when absent or without a block.
 */
export const headerReader = (block: string | undefined): ((key: string) => string | undefined) => {
  if (block === undefined) return () => undefined
  const fields = parseHeaderBlock(block)
  return (key) => {
    const field = FIELD_OF.get(key)
    if (field === undefined) return headerIn(block, key)
    const value = fields[field]
    return value === "" && field === "type" ? undefined : value
  }
}
