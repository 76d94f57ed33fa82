/**
 * Publishes of one event-loop turn leave the connection in one socket write.
 *
 * nats.js flushes its outbound buffer from a microtask queued by the first publish after a flush.
 * Our publishes come from many promise continuations (an append here, an ack there), each in a
 * later microtask than the last flush, so under load nearly every publish became a write of its
 * own — a tenth of a worker's CPU in the kernel's write path. Deferring them to the end of the
 * turn (setImmediate) and publishing them in one synchronous burst puts them in one write, in the
 * order they were asked for, at the cost of at most one turn of latency.
 *
 * The burst is written as protocol frames into one buffer per MiB (frames.ts) where the connection
 * allows it, and published message by message through nats.js otherwise.
 *
 * A caller can also ask to be called back as the next burst is about to leave (`beforeNextFlush`),
 * to add a last publish to it: a barrier behind everything published in the turn.
 */
import type { NatsConnection, PublishOptions } from "nats"
import { sendFrames, wireOf, type Publication, type WireProtocol } from "./frames.js"

interface Queued extends Publication {
  readonly onError: OnUnsent | undefined
}

/** Told that a publish could not go out, with what it was: one callback can serve every publish. */
export type OnUnsent = (error: unknown, subject: string, data: Uint8Array) => void

class Outbox {
  private queue: Array<Queued> = []
  private hooks: Array<() => void> = []
  private scheduled = false
  private readonly wire: WireProtocol | undefined

  constructor(private readonly nc: NatsConnection) {
    this.wire = wireOf(nc)
  }

  publish(subject: string, data: Uint8Array, options?: PublishOptions, onError?: OnUnsent): void {
    this.queue.push({ subject, data, options, onError })
    this.schedule()
  }

  beforeFlush(hook: () => void): void {
    this.hooks.push(hook)
    this.schedule()
  }

  private schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(this.flush)
  }

  private readonly flush = (): void => {
    // Still scheduled while the hooks run: what they publish joins this burst, behind the rest.
    const hooks = this.hooks
    this.hooks = []
    for (const hook of hooks) {
      try {
        hook()
      } catch {
        // a hook never stops the burst
      }
    }
    this.scheduled = false
    const queue = this.queue
    this.queue = []
    if (queue.length === 0) return
    if (this.wire !== undefined) {
      for (const [i, error] of sendFrames(this.nc, this.wire, queue)) {
        const { subject, data, onError } = queue[i]!
        onError?.(error, subject, data)
      }
      return
    }
    for (const { subject, data, options, onError } of queue) {
      try {
        this.nc.publish(subject, data, options)
      } catch (error) {
        // The connection is closed or draining: whoever waits for an answer is told.
        onError?.(error, subject, data)
      }
    }
  }
}

const outboxes = new WeakMap<NatsConnection, Outbox>()

const outboxOf = (nc: NatsConnection): Outbox => {
  let outbox = outboxes.get(nc)
  if (outbox === undefined) {
    outbox = new Outbox(nc)
    outboxes.set(nc, outbox)
  }
  return outbox
}

/**
 * Publishes on `nc` at the end of this turn, together with every other publish of the turn;
 * `onError` is called when it cannot go out.
 */
export const publishSoon = (
  nc: NatsConnection,
  subject: string,
  data: Uint8Array,
  options?: PublishOptions,
  onError?: OnUnsent
): void => outboxOf(nc).publish(subject, data, options, onError)

/**
 * Calls `hook` once, as the next burst of publishes on `nc` is about to leave; what it publishes
 * with `publishSoon` leaves last in that burst.
 */
export const beforeNextFlush = (nc: NatsConnection, hook: () => void): void => outboxOf(nc).beforeFlush(hook)
