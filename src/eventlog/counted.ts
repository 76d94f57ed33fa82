/**
 * Publishes to one stream without an ack each, counted in by a barrier: one message per publish
 * instead of two, for a writer that is the stream's only one.
 *
 * The publishes of an event-loop turn leave in one burst (outbox.ts), and the burst ends with a
 * barrier: a publish to the stream that says `Nats-Expected-Last-Sequence` of a sequence no stream
 * reaches, so the server refuses it, stores nothing, and answers with the stream's last sequence.
 * A stream on one server handles a connection's publishes in order, so that answer comes after every
 * publish of the burst was stored or refused. When the last sequence moved by exactly the number of
 * publishes since the barrier before, every one of them was stored; anything else — a publish
 * refused, a duplicate dropped by the stream's dedup window, another writer, a barrier without an
 * answer — leaves the group unconfirmed, and the caller publishes it again with acks. Its messages
 * carry a message id, so those already stored are not stored twice. (A barrier held back by the
 * publisher's in-flight limit, or a group published again meanwhile, makes the counts around it
 * not add up: those groups too are published again, never confirmed wrongly.)
 *
 * Only for a stream with one replica: a clustered stream answers a refused publish from its leader
 * before the ones ahead of it are replicated, so the barrier would say nothing about them.
 */
import { ConcurrencyConflict } from "./errors.js"
import { beforeNextFlush, publishSoon } from "./outbox.js"
import type { PipelinedPublisher } from "./pipeline.js"
import { WireHeaders } from "./wireHeaders.js"
import type { MsgHdrs } from "nats"

/** No stream's last sequence: the barrier is always refused. */
const UNREACHABLE_SEQUENCE = String(Number.MAX_SAFE_INTEGER)
const EMPTY = new Uint8Array()

interface Group {
  count: number
  failed: boolean
  readonly confirmed: Promise<boolean>
}

export class CountedPublisher {
  /** The last sequence as of the latest barrier sent, unless it went unanswered. */
  private last: Promise<number | undefined> | undefined
  private group: Group | undefined

  /** `barrierSubject`: a subject of the stream that nobody consumes (nothing is stored on it). */
  constructor(
    private readonly publisher: PipelinedPublisher,
    private readonly barrierSubject: string
  ) {}

  /**
   * Publishes without an ack. Resolves true once the stream is known to have stored it, false when
   * that cannot be told (then publish it again with an ack); never rejects.
   */
  publish(subject: string, data: Uint8Array, headers: MsgHdrs): Promise<boolean> {
    const group = this.group ?? this.open()
    group.count++
    publishSoon(this.publisher.mux.connection, subject, data, { headers }, () => {
      group.failed = true
    })
    return group.confirmed
  }

  private open(): Group {
    // Without a last sequence to count from, a barrier goes out ahead of the group's publishes.
    const before = this.last ?? this.barrier()
    let settle: (confirmed: boolean) => void = () => undefined
    const group: Group = { count: 0, failed: false, confirmed: new Promise<boolean>((resolve) => (settle = resolve)) }
    this.group = group
    beforeNextFlush(this.publisher.mux.connection, () => {
      this.group = undefined
      const after = this.barrier()
      this.last = after
      void Promise.all([before, after]).then(([from, to]) => {
        if (to === undefined && this.last === after) this.last = undefined
        settle(!group.failed && from !== undefined && to === from + group.count)
      })
    })
    return group
  }

  /** The stream's last sequence once every publish sent before it was handled; undefined when not told. */
  private async barrier(): Promise<number | undefined> {
    const h = new WireHeaders()
    h.set("Nats-Expected-Last-Sequence", UNREACHABLE_SEQUENCE)
    const result = await this.publisher.publish(this.barrierSubject, EMPTY, h)
    return !result.ok && result.error instanceof ConcurrencyConflict ? result.error.actualSeq : undefined
  }
}
