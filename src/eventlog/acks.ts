/**
 * Answering a JetStream delivery through its ack subject — from any connection, any process: the
 * subject is the handle, so a claim recorded in the log can be acked, nak'ed or terminated by any
 * broker. Shared by the claim path and the projection pull loop.
 */
import { nanos, type NatsConnection } from "nats"
import { redeliveryDelayMs } from "../domain/delays.js"
import { publishSoon } from "./outbox.js"

/**
 * How a delivery is answered: ack, in progress, terminate, or nak with a redelivery delay (clamped
 * to what the server accepts: see domain/delays.ts).
 */
export type DeliveryAnswer = "ack" | "wpi" | "term" | { readonly nakDelayMs: number }

const encoder = new TextEncoder()

export const answerDelivery = (nc: NatsConnection, ackSubject: string, how: DeliveryAnswer): void => {
  const body = how === "ack" ? "+ACK" : how === "wpi" ? "+WPI" : how === "term" ? "+TERM" : `-NAK ${JSON.stringify({ delay: nanos(redeliveryDelayMs(how.nakDelayMs)) })}`
  publishSoon(nc, ackSubject, encoder.encode(body))
}

/**
 * Parses an ack subject, `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`
 * (with or without the domain and account tokens of the v2 form).
 */
export const parseAckSubject = (subject: string): { delivered: number; streamSeq: number; time: Date } => {
  const t = subject.split(".")
  const offset = t.length >= 12 ? 4 : 2
  return { delivered: Number(t[offset + 2]), streamSeq: Number(t[offset + 3]), time: new Date(Math.floor(Number(t[offset + 5]) / 1e6)) }
}
