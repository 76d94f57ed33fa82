/**
 * Reading the event log in order from a sequence on — what the projections, rebuilds and replays
 * do. An ephemeral consumer that needs no acknowledgements (ack policy none, state in memory),
 * pulled in large batches: where the reader is, is the reader's own business (a checkpoint), so
 * nothing per event goes back to the server. When the consumer goes away (a server restart, a
 * leader change, idleness), the connection is re-established or a pull request is lost, a new
 * consumer reads on from the last sequence handed out.
 */
import type { NatsConnection } from "nats"
import { addReadConsumer } from "./streams.js"
import { eventsStream, type Naming } from "../../streams/definitions.js"
import type { RawEvent } from "./codec.js"
import { ConsumerGone, PullSession, type Delivery } from "./pull.js"
import { headerReader } from "./rawHeaders.js"

export interface EventFeedOptions {
  /** First sequence to read (1: the whole log). */
  readonly fromSeq: number
  /** Events per pull request. Default 1,000. */
  readonly batch?: number
  /** Subject filter within the log; default every event. */
  readonly filterSubject?: string
}

export const rawEventOf = (delivery: Delivery): RawEvent => ({
  seq: delivery.seq,
  subject: delivery.subject,
  time: delivery.time,
  data: delivery.data,
  header: headerReader(delivery.headerBlock)
})

export class EventFeed {
  private session: PullSession | undefined
  private last: number
  private readonly stream: string
  private readonly batch: number

  constructor(
    private readonly nc: NatsConnection,
    private readonly naming: Naming,
    private readonly options: EventFeedOptions
  ) {
    this.stream = eventsStream(naming)
    this.last = Math.max(0, options.fromSeq - 1)
    this.batch = options.batch ?? 1_000
  }

  /** Sequence of the last event handed out (fromSeq − 1 before the first). */
  get position(): number {
    return this.last
  }

  /**
   * The next events in log order (up to one batch), waiting up to `waitMs` for the first; none
   * when the wait ends. Rejects when the log cannot be read (the caller retries).
   */
  async next(waitMs: number): Promise<Array<RawEvent>> {
    const session = this.session ?? (this.session = await this.open())
    let deliveries: Array<Delivery>
    try {
      deliveries = await session.take(this.batch, waitMs)
    } catch (error) {
      if (!(error instanceof ConsumerGone)) throw error
      this.session = undefined
      void session.stop(false)
      void this.removeConsumer(session.consumer)
      return []
    }
    // A consumer made again may resend what was already handed out: never go backwards.
    const fresh = deliveries.filter((d) => d.seq > this.last)
    const tail = fresh[fresh.length - 1]
    if (tail !== undefined) this.last = tail.seq
    return fresh.map(rawEventOf)
  }

  /**
   * Stops reading and removes the consumer (the server would after 30 s idle anyway); with
   * `removeConsumer` false — the server is gone — only stops reading.
   */
  async close(removeConsumer = true): Promise<void> {
    const session = this.session
    this.session = undefined
    if (session === undefined) return
    await session.stop(false)
    if (removeConsumer) await this.removeConsumer(session.consumer)
  }

  /** Never rejects: a consumer already gone, or left without a server, expires after 30 s idle. */
  private async removeConsumer(name: string): Promise<void> {
    try {
      const jsm = await this.nc.jetstreamManager({ checkAPI: false })
      await jsm.consumers.delete(this.stream, name)
    } catch {
      // See above.
    }
  }

  private async open(): Promise<PullSession> {
    const jsm = await this.nc.jetstreamManager({ checkAPI: false })
    const info = await addReadConsumer(jsm, this.stream, this.options.filterSubject ?? `${this.naming.subjectRoot}.evt.>`, { seq: this.last + 1 })
    // This reader keeps its own position: after a reconnect or a lost request it reads on from
    // there through a new consumer, never from one whose server may have moved past it.
    return new PullSession(this.nc, this.stream, info.name, { batch: this.batch, expiresMs: 5_000, onLoss: "reopen" })
  }
}
