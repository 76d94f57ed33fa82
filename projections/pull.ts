/**
 * The pull loop of a durable consumer, on one long-lived inbox subscription and one pull request
 * at a time. nats.js's fetch() closes its inbox on a client-side timer only 5 % past the pull's
 * expiry; under load, events the server sent just before the expiry then land on a closed inbox
 * and wait out their ack wait (30 s stalls). Here the inbox lives as long as the loop, a request
 * ends only when the server says so (batch filled, or a 404/408 status), and stopping waits for
 * the open request to end, so every delivered event is handled.
 */
import { createInbox, nanos, type MsgHdrs, type NatsConnection } from "nats"
import { answerDelivery, parseAckSubject } from "../src/eventlog/acks.js"

/** One delivery of an event to this consumer, and how to answer it. */
export interface Delivery {
  readonly seq: number
  readonly subject: string
  readonly data: Uint8Array
  readonly headers: MsgHdrs | undefined
  /** 1 on the first delivery. */
  readonly deliveryCount: number
  /** The log's timestamp of the event. */
  readonly time: Date
  ack(): void
  nak(delayMs: number): void
}

const encoder = new TextEncoder()

export interface PullLoop {
  readonly done: Promise<void>
  /** Ends the loop once the open pull request ends; every delivered event is handled first. */
  stop(): Promise<void>
}

export const durablePull = (
  nc: NatsConnection,
  stream: string,
  durable: string,
  batch: number,
  concurrency: number,
  onMessage: (delivery: Delivery) => Promise<void>,
  expiresMs = 1_000
): PullLoop => {
  const inbox = createInbox()
  const queue: Array<Delivery> = []
  let requestOpen = false
  let requestedAt = 0
  let received = 0
  let stopping = false
  let failure: Error | undefined
  let wake: (() => void) | undefined
  const signal = () => {
    const w = wake
    wake = undefined
    w?.()
  }
  const sub = nc.subscribe(inbox, {
    callback: (_err, msg) => {
      const code = msg.headers?.code ?? 0
      if (code !== 0 || msg.reply === undefined) {
        // 404 no messages, 408 request expired, 409 limits or leadership: this request is over.
        if (code === 503) failure = new Error(`consumer ${durable} on ${stream} does not answer (503)`)
        requestOpen = false
        return signal()
      }
      const reply = msg.reply
      const { delivered, streamSeq, time } = parseAckSubject(reply)
      queue.push({
        seq: streamSeq,
        deliveryCount: delivered,
        time,
        subject: msg.subject,
        data: msg.data,
        headers: msg.headers,
        ack: () => answerDelivery(nc, reply, "ack"),
        nak: (delayMs) => answerDelivery(nc, reply, { nakDelayMs: delayMs })
      })
      if (++received >= batch) requestOpen = false
      signal()
    }
  })
  let running = 0
  const waitForChange = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => signal(), ms)
      wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })
  const done = (async () => {
    try {
      for (;;) {
        if (failure !== undefined) throw failure
        // A request the server never ended (it restarted, the reply was lost) is given up on.
        if (requestOpen && Date.now() - requestedAt > expiresMs + 5_000) requestOpen = false
        if (stopping && !requestOpen && queue.length === 0) break
        // Ask for the next batch while half of this one is still queued, so handlers never starve.
        if (!stopping && !requestOpen && queue.length <= batch / 2) {
          requestOpen = true
          requestedAt = Date.now()
          received = 0
          nc.publish(`$JS.API.CONSUMER.MSG.NEXT.${stream}.${durable}`, encoder.encode(JSON.stringify({ batch, expires: nanos(expiresMs) })), { reply: inbox })
        }
        const next = running < concurrency ? queue.shift() : undefined
        if (next !== undefined) {
          running++
          void onMessage(next)
            .catch(() => undefined)
            .finally(() => {
              running--
              signal()
            })
          continue
        }
        await waitForChange(expiresMs)
      }
      while (running > 0) await waitForChange(expiresMs)
    } finally {
      sub.unsubscribe()
    }
  })()
  return {
    done,
    stop: () => {
      stopping = true
      signal()
      return done
    }
  }
}
