/**
 * Event bodies on the wire: JSON encoded, decoded with the Effect Schema of the event union. A
 * message that does not decode is reported with the reason, never thrown.
 */
import { Either, ParseResult, Schema } from "effect"
import { TaskEvent, type StoredEvent } from "../domain/events.js"
import { HEADERS } from "../tracing/conventions.js"
import { readTraceHeaders } from "../tracing/codec.js"

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const decodeBody = Schema.decodeUnknownEither(TaskEvent)

export const encodeEvent = (event: TaskEvent): Uint8Array => encoder.encode(JSON.stringify(event))

/** A raw log message: what both direct gets and consumers hand us. */
export interface RawEvent {
  readonly seq: number
  readonly subject: string
  readonly time: Date
  readonly data: Uint8Array
  readonly header: (key: string) => string | undefined
}

export type DecodeResult =
  | { readonly ok: true; readonly stored: StoredEvent }
  | { readonly ok: false; readonly seq: number; readonly subject: string; readonly reason: string }

export const decodeEvent = (raw: RawEvent): DecodeResult => {
  const fail = (reason: string): DecodeResult => ({ ok: false, seq: raw.seq, subject: raw.subject, reason })
  let body: unknown
  try {
    body = JSON.parse(decoder.decode(raw.data))
  } catch {
    return fail("body is not JSON")
  }
  const decoded = decodeBody(body, { onExcessProperty: "ignore" })
  if (Either.isLeft(decoded)) {
    // The first issue, briefly: the union's full tree would print every event schema.
    const [first] = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)
    const type = typeof body === "object" && body !== null && "type" in body ? String((body as { type: unknown }).type) : "?"
    return fail(`not a valid event (type ${type.slice(0, 64)}): ${first === undefined ? "invalid" : `${first.path.join(".") || "body"}: ${first.message}`}`.slice(0, 300))
  }
  const event = decoded.right
  const declared = raw.header(HEADERS.event)
  if (declared !== undefined && declared !== event.type)
    return fail(`${HEADERS.event} header says ${declared} but the body is ${event.type}`)
  const prev = Number(raw.header(HEADERS.prevSeq) ?? Number.NaN)
  return {
    ok: true,
    stored: { seq: raw.seq, subject: raw.subject, time: raw.time, event, trace: readTraceHeaders(raw.header), ...(Number.isInteger(prev) ? { prevSeq: prev } : {}) }
  }
}
