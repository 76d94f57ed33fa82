/**
 * Publishes to one stream without an ack each, counted in by a barrier: one message per publish
 * instead of two, for a writer that is the stream's only one.
 *
 * The publishes of an event-loop turn leave together at the end of the turn (outbox.ts), and they
 * end with a barrier: a publish to the stream that says `Nats-Expected-Last-Sequence` of a
 * sequence no stream reaches, so the server refuses it, stores nothing, and answers with the
 * stream's last sequence. A stream on one server handles a connection's publishes in order, so
 * that answer comes after every publish of the burst was stored or refused. When the last sequence moved by exactly the number of
 * publishes since the barrier before, every one of them was stored; anything else — a publish
 * refused, a duplicate dropped by the stream's dedup window, another writer, a barrier without an
 * answer — leaves the group unconfirmed, and the caller publishes it again with acks. Its messages
 * carry a message id, so those already stored are not stored twice. (A barrier held back by the
 * publisher's in-flight limit, or a group published again meanwhile, makes the counts around it
 * not add up: those groups too are published again, never confirmed wrongly.) A publish alone in
 * its turn goes with an ack instead: two messages where it and a barrier would be three.
 *
 * Only for a stream with one replica: a clustered stream answers a refused publish from its leader
 * before the ones ahead of it are replicated, so the barrier would say nothing about them.
 */
import { beforeNextFlush, publishSoon } from "./outbox.js"
import type { PipelinedPublisher } from "./pipeline.js"
import { WireHeaders } from "./wireHeaders.js"
import type { MsgHdrs } from "nats"

/** No stream's last sequence: the barrier is always refused. */
const UNREACHABLE_SEQUENCE = String(Number.MAX_SAFE_INTEGER)

interface Queued {
  readonly subject: string
  readonly data: Uint8Array
  readonly headers: MsgHdrs
}

interface Group {
  readonly messages: Array<Queued>
  readonly confirmed: Promise<boolean>
  readonly settle: (confirmed: boolean) => void
}

export class CountedPublisher {
  /** The last sequence as of the latest barrier or acked publish sent, unless it went unanswered. */
  private last: Promise<number | undefined> | undefined
  private group: Group | undefined

  /** `barrierSubject`: a subject of the stream that nobody consumes (nothing is stored on it). */
  constructor(
    private readonly publisher: PipelinedPublisher,
    private readonly barrierSubject: string
  ) {}

  /**
   * Publishes at the end of this turn, without an ack when others go with it. Resolves true once
   * the stream is known to have stored it, false when that cannot be told (then publish it again
   * with an ack); never rejects.
   */
  publish(subject: string, data: Uint8Array, headers: MsgHdrs): Promise<boolean> {
    const group = this.group ?? this.open()
    group.messages.push({ subject, data, headers })
    return group.confirmed
  }

  private open(): Group {
    let settle: (confirmed: boolean) => void = () => undefined
    const confirmed = new Promise<boolean>((resolve) => (settle = resolve))
    const group: Group = { messages: [], confirmed, settle }
    this.group = group
    beforeNextFlush(this.publisher.mux.connection, () => this.send(group))
    return group
  }

  /** As the turn's burst leaves: the group's publishes, and what tells whether they were stored. */
  private send(group: Group): void {
    this.group = undefined
    const { messages, settle } = group
    if (messages.length === 1) {
      // Alone, an acked publish costs two messages where a counted one and its barrier cost three;
      // its ack gives the last sequence as well as a barrier would.
      const { subject, data, headers } = messages[0]!
      const result = this.publisher.publish(subject, data, headers)
      this.remember(result.then((r) => (r.ok && !r.duplicate ? r.seq : undefined)))
      void result.then((r) => settle(r.ok))
      return
    }
    // Without a last sequence to count from, a barrier goes out ahead of the group's publishes.
    const before = this.last ?? this.barrier()
    let failed = false
    for (const { subject, data, headers } of messages)
      publishSoon(this.publisher.mux.connection, subject, data, { headers }, () => {
        failed = true
      })
    const after = this.remember(this.barrier())
    void Promise.all([before, after]).then(([from, to]) => settle(!failed && from !== undefined && to === from + messages.length))
  }

  /** Counts from `last` next; forgotten if it goes unanswered, so the next group asks afresh. */
  private remember(last: Promise<number | undefined>): Promise<number | undefined> {
    this.last = last
    void last.then((seq) => {
      if (seq === undefined && this.last === last) this.last = undefined
    })
    return last
  }

  /** The stream's last sequence once every publish sent before it was handled; undefined when not told. */
  private async barrier(): Promise<number | undefined> {
    const h = new WireHeaders()
    h.set("Nats-Expected-Last-Sequence", UNREACHABLE_SEQUENCE)
    return this.publisher.refusedAt(this.barrierSubject, h)
  }
}
