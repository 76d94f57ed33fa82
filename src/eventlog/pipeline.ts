/**
 * The pipelined publisher (DESIGN §9): acked JetStream publishes sent as core publishes with a
 * reply subject under one shared inbox subscription, matched back to their callers by a map.
 * Thousands stay in flight on one connection without the client's per-request machinery, which is
 * what limits `js.publish` in Node. Each caller gets its own result: the stream sequence, or a
 * typed error (conflict, timeout, missing stream, rejection).
 *
 * Order: publishes leave the connection in call order, so the server stores them in that order.
 */
import type { Msg, MsgHdrs, NatsConnection } from "nats"
import { RequestMux } from "./mux.js"
import { WireHeaders } from "./wireHeaders.js"
import { ConcurrencyConflict, JS_WRONG_LAST_SEQUENCE, LogError } from "./errors.js"
import type { AppendResult } from "./EventLog.js"

export interface PipelineOptions {
  /** How long to wait for each ack before reporting a timeout. Default 5 s. */
  readonly ackTimeoutMs?: number
  /** Publishes in flight at most; further callers wait for a slot. Default 4096. */
  readonly maxInFlight?: number
}

interface PubAckWire {
  readonly seq?: number
  readonly duplicate?: boolean
  readonly error?: { readonly code?: number; readonly err_code?: number; readonly description?: string }
}

const decoder = new TextDecoder()
const EMPTY = new Uint8Array()

export class PipelinedPublisher {
  readonly mux: RequestMux

  constructor(nc: NatsConnection, options: PipelineOptions = {}) {
    this.mux = new RequestMux(nc, {
      ...(options.ackTimeoutMs !== undefined ? { timeoutMs: options.ackTimeoutMs } : {}),
      ...(options.maxInFlight !== undefined ? { maxInFlight: options.maxInFlight } : {})
    })
  }

  /** Publishes once and resolves with the ack or a typed error; never rejects. */
  async publish(subject: string, data: Uint8Array, headers: MsgHdrs, expectedSeq?: number): Promise<AppendResult> {
    const reply = await this.mux.request(subject, data, headers)
    if (!reply.ok)
      return {
        ok: false,
        error: new LogError({ reason: reply.reason, detail: reply.reason === "timeout" ? `no ack for ${subject} within ${this.mux.timeoutMs} ms` : reply.detail })
      }
    return interpretAck(subject, expectedSeq, reply.msg)
  }

  /**
   * Publishes a message the stream is meant to refuse (an expected last sequence it never reaches)
   * and resolves with the last sequence the refusal names; undefined for any other answer or none.
   * The counted publisher's barrier: an answer that is expected makes no error object (a
   * ConcurrencyConflict captures a stack: ~10 µs each here, where the number alone costs nothing).
   */
  async refusedAt(subject: string, headers: MsgHdrs): Promise<number | undefined> {
    const reply = await this.mux.request(subject, EMPTY, headers)
    if (!reply.ok) return undefined
    const ack = readAck(reply.msg)
    return ack instanceof Error ? undefined : wrongLastSequence(ack)?.actualSeq
  }

  /** In-flight publishes right now. */
  get inFlight(): number {
    return this.mux.inFlight
  }

  /** Stops listening; anything still in flight is reported as closed. */
  close(): void {
    this.mux.close()
  }
}

/** The ack's JSON, or what made it unreadable. */
const readAck = (msg: Msg): PubAckWire | Error => {
  try {
    return JSON.parse(decoder.decode(msg.data)) as PubAckWire
  } catch (cause) {
    return cause instanceof Error ? cause : new Error(String(cause))
  }
}

/** A refusal for the expected last sequence, with the last sequence it names; undefined for any other answer. */
const wrongLastSequence = (ack: PubAckWire): { readonly actualSeq: number | undefined } | undefined => {
  if (ack.error?.err_code !== JS_WRONG_LAST_SEQUENCE) return undefined
  const actual = /(\d+)\s*$/.exec(ack.error.description ?? "")?.[1]
  return { actualSeq: actual === undefined ? undefined : Number(actual) }
}

/** Translates a JetStream publish ack (or its absence) into our result. */
const interpretAck = (subject: string, expectedSeq: number | undefined, msg: Msg): AppendResult => {
  if (msg.headers?.code === 503 || (msg.data.length === 0 && msg.headers?.hasError === true))
    return { ok: false, error: new LogError({ reason: "unavailable", detail: `no JetStream responder on ${subject} (streams not provisioned, or a leader election in progress)` }) }
  const ack = readAck(msg)
  if (ack instanceof Error) return { ok: false, error: new LogError({ reason: "rejected", detail: "unreadable publish ack", cause: ack }) }
  if (ack.error !== undefined) {
    const refused = wrongLastSequence(ack)
    if (refused !== undefined) return { ok: false, error: new ConcurrencyConflict({ subject, expectedSeq: expectedSeq ?? -1, actualSeq: refused.actualSeq }) }
    return { ok: false, error: new LogError({ reason: "rejected", detail: ack.error.description ?? "publish refused" }) }
  }
  return { ok: true, seq: ack.seq ?? 0, duplicate: ack.duplicate === true }
}

/**
 * Headers of a publish the stream stores once per `msgId` (within its duplicate window), and only
 * into `expectedStream` when named.
 */
export const dedupHeaders = (msgId: string, expectedStream?: string): MsgHdrs => {
  const h = new WireHeaders()
  h.set("Nats-Msg-Id", msgId)
  if (expectedStream !== undefined) h.set("Nats-Expected-Stream", expectedStream)
  return h
}
