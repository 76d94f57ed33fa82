/**
 * Event bodies on the wire: JSON encoded, decoded with the Effect Schema of the type the
 * `Codeq-Event` header names (domain/eventDecode.ts). A message that does not decode is reported
 * with the reason, never thrown.
 */
import { Either, ParseResult } from "effect"
import { decodeAnyEvent, eventDecoderOf } from "../domain/eventDecode.js"
import type { EventTrace, StoredEvent, TaskEvent } from "../domain/events.js"
import { HEADERS } from "../tracing/conventions.js"
import { readTraceHeaders } from "../tracing/codec.js"
import { utf8 } from "./utf8.js"

const decoder = new TextDecoder()

export const encodeEvent = (event: TaskEvent): Uint8Array => utf8(JSON.stringify(event))

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
  const declared = raw.header(HEADERS.event)
  const byType = declared === undefined ? undefined : eventDecoderOf(declared)
  const bodyType = typeof body === "object" && body !== null && "type" in body ? String((body as { type: unknown }).type) : "?"
  if (byType !== undefined && bodyType !== declared) return fail(`${HEADERS.event} header says ${declared} but the body is ${bodyType.slice(0, 64)}`)
  const decoded = (byType ?? decodeAnyEvent)(body)
  if (Either.isLeft(decoded)) {
    // The first issue, briefly: the union's full tree would print every event schema.
    const [first] = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)
    return fail(`not a valid event (type ${bodyType.slice(0, 64)}): ${first === undefined ? "invalid" : `${first.path.join(".") || "body"}: ${first.message}`}`.slice(0, 300))
  }
  const event = decoded.right
  if (declared !== undefined && declared !== event.type)
    return fail(`${HEADERS.event} header says ${declared} but the body is ${event.type}`)
  const prev = Number(raw.header(HEADERS.prevSeq) ?? Number.NaN)
  const trace = readTraceHeaders(raw.header)
  return {
    ok: true,
    stored: {
      seq: raw.seq,
      subject: raw.subject,
      time: raw.time,
      event,
      trace: event.type === "TaskCreated" ? detachedTrace(trace) : trace,
      ...(Number.isInteger(prev) ? { prevSeq: prev } : {}),
      bodyBytes: raw.data.length
    }
  }
}

/**
 * A copy of `s` that shares no memory with the text it was cut from. nats.js cuts header values
 * out of the message's whole header block, and V8 keeps a cut of 13 characters or more as a view
 * of that block: a task state holding its create's traceparent held the create's ~300-byte header
 * block with it, ~6 MB of the broker's heap for the 20,000 states it keeps (a heap snapshot).
 */
const detached = (s: string | undefined): string | undefined => (s === undefined ? undefined : Buffer.from(s, "utf8").toString("utf8"))

/** The create's trace context, kept in the task's state for its life: detached from the message. */
const detachedTrace = (trace: EventTrace | undefined): EventTrace | undefined => {
  if (trace === undefined) return undefined
  const tracestate = detached(trace.tracestate)
  const baggage = detached(trace.baggage)
  return { ...trace, traceparent: detached(trace.traceparent) ?? trace.traceparent, tracestate, ...(baggage !== undefined ? { baggage } : {}) }
}
