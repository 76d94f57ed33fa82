/**
 * Pulling from a JetStream consumer on one long-lived inbox with one open request at a time.
 *
 * nats.js's fetch() closes its inbox on a client-side timer only 5 % past the pull's expiry; under
 * load, messages the server sent just before the expiry then land on a closed inbox and wait out
 * their ack wait. Here the inbox lives as long as the session, a request ends only when the server
 * says so (batch filled, or a 404/408/409 status), and the next batch is asked for while half of
 * the last one is still queued, so a reader never starves. Every consumer codeq reads — the
 * projections' event feed, the webhook outbox, rebuilds and replays — goes through this.
 */
import { createInbox, nanos, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from "nats"
import { answerDelivery, parseAckSubject, type DeliveryAnswer } from "./acks.js"
import { isConsumerNotFound } from "./errors.js"

/** One delivery of a stream message to a consumer, and how to answer it. */
export interface Delivery {
  /** Stream sequence. */
  readonly seq: number
  readonly subject: string
  readonly data: Uint8Array
  readonly headers: MsgHdrs | undefined
  /** 1 on the first delivery. */
  readonly deliveryCount: number
  /** The message's timestamp in the stream. */
  readonly time: Date
  /** The ack subject: any connection can answer through it. */
  readonly ackSubject: string
}

export interface PullOptions {
  /** Messages asked for per request. */
  readonly batch: number
  /** How long a request waits for messages before the server ends it. Default 5 s. */
  readonly expiresMs?: number
}

/** The consumer no longer answers (deleted, or its stream is gone): make it again, or give up. */
export class ConsumerGone extends Error {}

const encoder = new TextEncoder()

/**
 * A request the server has not ended this long after its expiry is lost. WHY the consumer is then
 * looked up: a pull on a consumer that no longer exists (an ephemeral one after a server restart)
 * is not refused — the server's JetStream API subscription takes the request and drops it — so
 * silence is the only sign, and asking for the consumer tells a lost request from a lost consumer.
 */
const LOST_REQUEST_GRACE_MS = 1_000

export class PullSession {
  private readonly inbox = createInbox()
  private readonly sub: Subscription
  private readonly queue: Array<Delivery> = []
  private readonly expiresMs: number
  private requestOpen = false
  private requestedAt = 0
  private received = 0
  private stopped = false
  private gone: ConsumerGone | undefined
  private checking = false
  private wake: (() => void) | undefined

  constructor(
    private readonly nc: NatsConnection,
    readonly stream: string,
    readonly consumer: string,
    private readonly options: PullOptions
  ) {
    this.expiresMs = options.expiresMs ?? 5_000
    this.sub = nc.subscribe(this.inbox, { callback: (_err, msg) => this.onMessage(msg) })
  }

  /** Messages queued and not yet taken. */
  get queued(): number {
    return this.queue.length
  }

  /**
   * Up to `max` deliveries in stream order, waiting up to `waitMs` for the first. Resolves with
   * none when the wait ends or the session stops; rejects with ConsumerGone when nobody answers.
   */
  async take(max: number, waitMs: number): Promise<Array<Delivery>> {
    const deadline = Date.now() + waitMs
    for (;;) {
      if (this.gone !== undefined) throw this.gone
      this.refill()
      if (this.queue.length > 0) {
        const out = this.queue.splice(0, max)
        this.refill()
        return out
      }
      const left = deadline - Date.now()
      if (this.stopped || left <= 0) return []
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => this.signal(), Math.min(left, this.expiresMs))
        this.wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
  }

  /** Answers a delivery (ack, nak with delay, term) through its ack subject. */
  answer(delivery: Delivery, how: DeliveryAnswer): void {
    answerDelivery(this.nc, delivery.ackSubject, how)
  }

  /**
   * Stops asking and drops the inbox; deliveries still queued are returned for the caller to
   * settle. With `drain`, first waits (bounded by the request's expiry) for the open request to
   * end, so nothing is delivered to a dead inbox to wait out its ack wait — for consumers with
   * acknowledgements; a reader without them (the event feed) just goes.
   */
  async stop(drain = true): Promise<Array<Delivery>> {
    this.stopped = true
    const deadline = Date.now() + this.expiresMs + 1_000
    while (drain && this.requestOpen && this.gone === undefined && Date.now() < deadline)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50)
        this.wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    this.sub.unsubscribe()
    this.signal()
    return this.queue.splice(0)
  }

  private signal(): void {
    const wake = this.wake
    this.wake = undefined
    wake?.()
  }

  private refill(): void {
    if (this.stopped || this.gone !== undefined) return
    // A request the server never ended (it restarted, the status was lost) is given up on, and
    // the consumer looked up: gone, it is made again by the caller.
    if (this.requestOpen && Date.now() - this.requestedAt > this.expiresMs + LOST_REQUEST_GRACE_MS) {
      this.requestOpen = false
      void this.checkConsumer()
    }
    if (this.requestOpen || this.queue.length > this.options.batch / 2) return
    this.requestOpen = true
    this.requestedAt = Date.now()
    this.received = 0
    this.nc.publish(
      `$JS.API.CONSUMER.MSG.NEXT.${this.stream}.${this.consumer}`,
      encoder.encode(JSON.stringify({ batch: this.options.batch, expires: nanos(this.expiresMs) })),
      { reply: this.inbox }
    )
  }

  private async checkConsumer(): Promise<void> {
    if (this.checking) return
    this.checking = true
    try {
      const jsm = await this.nc.jetstreamManager({ checkAPI: false })
      await jsm.consumers.info(this.stream, this.consumer)
    } catch (error) {
      if (isConsumerNotFound(error) && this.gone === undefined) {
        this.gone = new ConsumerGone(`consumer ${this.consumer} on ${this.stream} no longer exists`)
        this.signal()
      }
    } finally {
      this.checking = false
    }
  }

  private onMessage(msg: Msg): void {
    const code = msg.headers?.code ?? 0
    if (code !== 0 || msg.reply === undefined) {
      // 404 no messages, 408 request expired, 409 limits or leadership: this request is over.
      // 503: no consumer answers (deleted, or the stream is gone).
      if (code === 503) this.gone = new ConsumerGone(`consumer ${this.consumer} on ${this.stream} does not answer (503)`)
      this.requestOpen = false
      this.signal()
      return
    }
    const { delivered, streamSeq, time } = parseAckSubject(msg.reply)
    this.queue.push({ seq: streamSeq, deliveryCount: delivered, time, subject: msg.subject, data: msg.data, headers: msg.headers, ackSubject: msg.reply })
    if (++this.received >= this.options.batch) this.requestOpen = false
    this.signal()
  }
}
