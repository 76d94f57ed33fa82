/**
 * Answering a JetStream delivery through its ack subject — from any connection, any process: the
 * subject is the handle, so a claim recorded in the log can be acked, nak'ed or terminated by any
 * broker. Shared by the claim path and the projection pull loop.
 *
 * WHY naks and terms are confirmed: an answer is handled by the consumer's leader only. Sent while
 * the consumer has no leader (a cluster node lost, a server restarting), it is dropped without a
 * word, and the message comes back only after the consumer's ack wait — a claim handed back with
 * a 1 s nak after a failed append then waits 30 s, a nack's or abandon's delay is lost. So an
 * answer that sets when the message comes back (nak) or ends it (term) asks the leader to confirm
 * it, and is sent again until it does, within the ack wait. A plain ack is not: if it is lost the
 * message comes back later and its claimer finds the task ended in the log and acks it again.
 */
import { nanos, type NatsConnection } from "nats"
import { redeliveryDelayMs } from "../domain/delays.js"
import { RequestMux } from "./mux.js"
import { publishSoon } from "./outbox.js"
import { Duration } from "effect"
import { backoff, tryThenRetry } from "../domain/retry.js"
import { utf8 } from "./utf8.js"

/**
 * How a delivery is answered: ack, in progress, terminate, or nak with a redelivery delay (clamped
 * to what the server accepts: see domain/delays.ts).
 */
export type DeliveryAnswer = "ack" | "wpi" | "term" | { readonly nakDelayMs: number }

/** The bodies of an ack and an in-progress answer, encoded once (never mutated once published). */
const ACK = utf8("+ACK")
const WPI = utf8("+WPI")

/** How long a confirmed answer waits for each confirmation, and for all of them. */
const CONFIRM_TIMEOUT_MS = 2_000
const CONFIRM_DEADLINE_MS = 30_000

const confirmers = new WeakMap<NatsConnection, RequestMux>()

const confirmerOf = (nc: NatsConnection): RequestMux => {
  let mux = confirmers.get(nc)
  if (mux === undefined) {
    mux = new RequestMux(nc, { timeoutMs: CONFIRM_TIMEOUT_MS })
    confirmers.set(nc, mux)
  }
  return mux
}

/** Sending a nak or term again until confirmed: 200 ms doubling to 1 s, jittered, within CONFIRM_DEADLINE_MS. */
const CONFIRM_RETRY = backoff(Duration.millis(200), Duration.seconds(1))

/** Sends `body` until the consumer's leader confirms it, the deadline passes or the connection closes. */
const sendConfirmed = async (nc: NatsConnection, ackSubject: string, body: Uint8Array): Promise<void> => {
  const mux = confirmerOf(nc)
  const deadline = Date.now() + CONFIRM_DEADLINE_MS
  const send = () => mux.request(ackSubject, body)
  // Confirmed, or nobody to confirm it (closed): done. 503: no leader listens on the ack subject
  // right now (the answer was dropped): send again.
  const confirmed = (reply: Awaited<ReturnType<typeof send>>) => (reply.ok ? reply.msg.headers?.code !== 503 : reply.reason === "closed")
  await tryThenRetry(send, (attempt) => attempt.ok && !confirmed(attempt.value) && Date.now() < deadline && !nc.isClosed(), CONFIRM_RETRY)
}

export const answerDelivery = (nc: NatsConnection, ackSubject: string, how: DeliveryAnswer): void => {
  if (how === "ack" || how === "wpi") return publishSoon(nc, ackSubject, how === "ack" ? ACK : WPI)
  const body = how === "term" ? "+TERM" : `-NAK ${JSON.stringify({ delay: nanos(redeliveryDelayMs(how.nakDelayMs)) })}`
  void sendConfirmed(nc, ackSubject, utf8(body)).catch(() => undefined)
}

/** What an ack subject says about a delivery. */
export interface AckInfo {
  /** How many times the message has been delivered, this time included. */
  readonly delivered: number
  /** Its stream sequence. */
  readonly seq: number
  /** When it was stored (epoch ns, decimal). */
  readonly timeNs: string
  /** Messages of the consumer still to deliver after this one. */
  readonly pending: number
}

/** An epoch-ns time: 1 to 20 decimal digits. */
export const isNanos = (s: string): boolean => {
  if (s.length === 0 || s.length > 20) return false
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 48 || c > 57) return false
  }
  return true
}

/** Dot positions of the subject being parsed (a subject with more tokens is not an ack subject). */
const dots = new Int32Array(32)

/** The decimal number in `s[from, to)`: NaN when it is empty or has anything but digits. */
const decimalAt = (s: string, from: number, to: number): number => {
  if (to <= from) return Number.NaN
  let n = 0
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i) - 48
    if (c < 0 || c > 9) return Number.NaN
    n = n * 10 + c
  }
  return n
}

/**
 * Parses an ack subject, `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`
 * (or the v2 form with domain and account hash, and a trailing token); undefined when it is not
 * one. The wire reader reads the same from bytes (window/wireRecord.ts `parseAckInto`).
 *
 * WHY by positions, not `split`: every delivery the broker's feed and a worker's claims receive
 * is parsed here, and splitting made an array and nine to twelve strings of each: `parseAckSubject`
 * took ~0.5–0.9 µs a subject that way against ~0.3 µs now, its Date included (three alternated
 * loops of 2,000,000 on the built code).
 */
export const parseAck = (subject: string): AckInfo | undefined => {
  if (!subject.startsWith("$JS.ACK.")) return undefined
  let count = 0
  for (let i = subject.indexOf("."); i !== -1; i = subject.indexOf(".", i + 1)) {
    if (count === dots.length) return undefined
    dots[count++] = i
  }
  const tokens = count + 1
  if (tokens < 9) return undefined
  const offset = tokens >= 12 ? 4 : 2
  const seq = decimalAt(subject, tokenStart(offset + 3), tokenEnd(offset + 3, count, subject))
  const timeNs = subject.slice(tokenStart(offset + 5), tokenEnd(offset + 5, count, subject))
  const pending = decimalAt(subject, tokenStart(offset + 6), tokenEnd(offset + 6, count, subject))
  if (!Number.isSafeInteger(seq) || !isNanos(timeNs)) return undefined
  return { delivered: decimalAt(subject, tokenStart(offset + 2), tokenEnd(offset + 2, count, subject)), seq, timeNs, pending: Number.isSafeInteger(pending) ? pending : 0 }
}

/** Token k of the subject `parseAck` has found the dots of runs from just after dot k−1 ... */
const tokenStart = (k: number): number => (dots[k - 1] as number) + 1
/** ... to dot k, or to the end for the last one (`count` dots). */
const tokenEnd = (k: number, count: number, subject: string): number => (k < count ? (dots[k] as number) : subject.length)

/** Delivery count, stream sequence and store time of a delivery's ack subject (NaN and an invalid date when it is not one). */
export const parseAckSubject = (subject: string): { delivered: number; streamSeq: number; time: Date } => {
  const ack = parseAck(subject)
  return { delivered: ack?.delivered ?? Number.NaN, streamSeq: ack?.seq ?? Number.NaN, time: new Date(ack === undefined ? Number.NaN : Math.floor(Number(ack.timeNs) / 1e6)) }
}
