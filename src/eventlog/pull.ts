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
import { createInbox, nanos, type Msg, type NatsConnection, type Subscription } from "nats"
import { answerDelivery, parseAckSubject, type DeliveryAnswer } from "./acks.js"
import { isConsumerNotFound } from "./errors.js"
import { followConnection } from "./connection.js"
import { headerBlockOf, statusOfMessage } from "./rawHeaders.js"
import { utf8 } from "./utf8.js"

/** One delivery of a stream message to a consumer, and how to answer it. */
export interface Delivery {
  /** Stream sequence. */
  readonly seq: number
  readonly subject: string
  readonly data: Uint8Array
  /** The header block as sent (`rawHeaders.ts`), undefined without headers. */
  readonly headerBlock: string | undefined
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
  /**
   * What a reconnect or a lost request means. "recheck" (default): the consumer is looked up and
   * pulled from again if it is there. "reopen": `take` rejects with ConsumerGone at once — for a
   * reader that keeps its own position (no acknowledgements), since a consumer that outlived its
   * server may count as delivered what never reached this inbox.
   */
  readonly onLoss?: "recheck" | "reopen"
}

/** The consumer no longer answers (deleted, or its stream is gone): make it again, or give up. */
export class ConsumerGone extends Error {}

/**
 * A request the server has not ended this long after its expiry is lost. WHY the consumer is then
 * looked up: a pull on a consumer that no longer exists (an ephemeral one after a server restart)
 * is not refused — the server's JetStream API subscription takes the request and drops it — so
 * silence is the only sign, and asking for the consumer tells a lost request from a lost consumer.
 */
const LOST_REQUEST_GRACE_MS = 1_000

/**
 * After a reconnect the consumer is asked for before the next pull, this often while the server
 * does not answer yet (JetStream still loading its store), for at most RECHECK_FOR_MS; past that,
 * pulling goes on and a lost request is found as above. Each lookup waits LOOKUP_TIMEOUT_MS.
 */
const RECHECK_EVERY_MS = 200
const RECHECK_FOR_MS = 5_000
const LOOKUP_TIMEOUT_MS = 1_000

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
  /** A reconnect happened and the consumer has not been looked up since: no pull until it is. */
  private held = false
  private reconnects = 0
  private down = false
  private wake: (() => void) | undefined

  constructor(
    private readonly nc: NatsConnection,
    readonly stream: string,
    readonly consumer: string,
    private readonly options: PullOptions
  ) {
    this.expiresMs = options.expiresMs ?? 5_000
    this.sub = nc.subscribe(this.inbox, { callback: (_err, msg) => this.onMessage(msg) })
    // WHY: the open request went down with the server it was sent to. Waiting for it to look
    // lost (its expiry and a grace) left a feed idle for seconds after every server restart —
    // twice that when the lookup fell in the outage — and the dispatcher with it.
    // While the connection is down nothing is taken for lost: requests would only time out.
    followConnection(
      nc,
      {
        down: () => void (this.down = true),
        up: () => {
          this.down = false
          if (options.onLoss === "reopen") this.end("the connection was re-established")
          else void this.afterReconnect()
        }
      },
      () => this.stopped
    )
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
    if (this.requestOpen && !this.down && Date.now() - this.requestedAt > this.expiresMs + LOST_REQUEST_GRACE_MS) {
      this.requestOpen = false
      if (this.options.onLoss === "reopen") return this.end("a pull request went unanswered")
      void this.checkConsumer()
    }
    if (this.requestOpen || this.held || this.queue.length > this.options.batch / 2) return
    this.requestOpen = true
    this.requestedAt = Date.now()
    this.received = 0
    this.nc.publish(
      `$JS.API.CONSUMER.MSG.NEXT.${this.stream}.${this.consumer}`,
      utf8(JSON.stringify({ batch: this.options.batch, expires: nanos(this.expiresMs) })),
      { reply: this.inbox }
    )
  }

  /** After a reconnect: no pull until the consumer is looked up (gone, the caller makes it again). */
  private async afterReconnect(): Promise<void> {
    if (this.stopped || this.gone !== undefined) return
    const generation = ++this.reconnects
    this.held = true
    this.requestOpen = false
    try {
      await this.lookUp(RECHECK_FOR_MS, () => generation === this.reconnects)
    } finally {
      if (generation === this.reconnects) {
        this.held = false
        this.signal()
      }
    }
  }

  /** After a lost request: one lookup at a time. */
  private async checkConsumer(): Promise<void> {
    if (this.checking) return
    this.checking = true
    try {
      await this.lookUp(0, () => true)
    } finally {
      this.checking = false
    }
  }

  /**
   * Looks the consumer up; gone, `take` rejects with ConsumerGone. While the server does not
   * answer, asks again every RECHECK_EVERY_MS for up to `forMs`, as long as `current()`.
   */
  private async lookUp(forMs: number, current: () => boolean): Promise<void> {
    const until = Date.now() + forMs
    try {
      const jsm = await this.nc.jetstreamManager({ checkAPI: false, timeout: LOOKUP_TIMEOUT_MS })
      while (!this.stopped && current()) {
        try {
          await jsm.consumers.info(this.stream, this.consumer)
          return
        } catch (error) {
          if (isConsumerNotFound(error)) return this.end("it no longer exists")
          if (Date.now() >= until) return
          await new Promise((resolve) => setTimeout(resolve, RECHECK_EVERY_MS))
        }
      }
    } catch {
      // No manager without a connection: the next reconnect or lost request looks again.
    }
  }

  /** The session is over: `take` rejects with ConsumerGone(why) from now on. */
  private end(why: string): void {
    if (this.stopped) return
    this.gone ??= new ConsumerGone(`consumer ${this.consumer} on ${this.stream}: ${why}`)
    this.signal()
  }

  private onMessage(msg: Msg): void {
    const code = statusOfMessage(msg)
    if (code !== 0 || msg.reply === undefined) {
      // 404 no messages, 408 request expired, 409 limits or leadership: this request is over.
      // 503: no consumer answers (deleted, or the stream is gone).
      this.requestOpen = false
      if (code === 503) return this.end("no consumer answers (503)")
      this.signal()
      return
    }
    const { delivered, streamSeq, time } = parseAckSubject(msg.reply)
    this.queue.push({ seq: streamSeq, deliveryCount: delivered, time, subject: msg.subject, data: msg.data, headerBlock: headerBlockOf(msg), ackSubject: msg.reply })
    if (++this.received >= this.options.batch) this.requestOpen = false
    this.signal()
  }
}
