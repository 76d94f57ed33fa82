/**
 * Claim messages the consumer can no longer deliver, removed.
 *
 * WHY: on a work-queue stream an acknowledged message is removed by the server. When a server
 * crashes between recording a consumer's acknowledgements and removing the messages, it comes
 * back with the consumer's ack floor past messages that are still stored: below the floor they are
 * never delivered again, and never removed — the stream counts them forever. A message at or below
 * a lane consumer's ack floor has been acknowledged by definition, and each lane has exactly one
 * consumer (work-queue filters do not overlap), so purging the lane's subject below the floor
 * removes only what was already done.
 */
import type { NatsConnection } from "nats"
import { claimsStream, type Naming } from "../../../streams/definitions.js"
import { onReconnect } from "../connection.js"
import type { Logger } from "../../log/log.js"

export interface ReconcileResult {
  /** Lanes looked at. */
  readonly lanes: number
  /** Messages removed below an ack floor. */
  readonly purged: number
}

/**
 * One pass over every lane consumer of the claim stream. A lane's stored messages are those still
 * to deliver (`num_pending`) and those delivered and not yet acknowledged (`num_ack_pending`);
 * any more are below the ack floor. Two requests when nothing is left behind (the stream's
 * per-subject counts and the consumer list), and a purge per lane that has such messages.
 */
export const reconcileClaims = async (nc: NatsConnection, naming: Naming): Promise<ReconcileResult> => {
  const jsm = await nc.jetstreamManager({ checkAPI: false })
  const stream = claimsStream(naming)
  const info = await jsm.streams.info(stream, { subjects_filter: ">" })
  if (info.state.messages === 0) return { lanes: 0, purged: 0 }
  const stored = info.state.subjects ?? {}
  let lanes = 0
  let purged = 0
  for await (const consumer of jsm.consumers.list(stream)) {
    lanes++
    const filter = consumer.config.filter_subject
    if (filter === undefined) continue
    const below = (stored[filter] ?? 0) - consumer.num_pending - consumer.num_ack_pending
    if (below <= 0) continue
    const result = await jsm.streams.purge(stream, { filter, seq: consumer.ack_floor.stream_seq + 1 })
    purged += result.purged
  }
  return { lanes, purged }
}

export interface ClaimReconcilerOptions {
  /** Time between passes. Default 15 s. */
  readonly everyMs?: number
  /** A pass this long after each reconnect (the server may just have come back). Default 3 s. */
  readonly afterReconnectMs?: number
  /** Whether the server is reachable now: no pass starts without it, and a stop does not wait for one. Default always. */
  readonly connected?: () => boolean
  readonly log: Logger
}

/** Runs `reconcileClaims` on a timer and after each reconnect, until stopped. */
export class ClaimReconciler {
  private readonly timer: NodeJS.Timeout
  private readonly pending = new Set<NodeJS.Timeout>()
  private running: Promise<void> | undefined
  private stopped = false

  constructor(
    private readonly nc: NatsConnection,
    private readonly naming: Naming,
    private readonly options: ClaimReconcilerOptions
  ) {
    this.timer = setInterval(() => this.pass(), options.everyMs ?? 15_000)
    this.timer.unref()
    onReconnect(nc, () => this.afterReconnect(), () => this.stopped)
  }

  /**
   * Stops the timers and waits for a pass in flight — unless the server is gone: its requests
   * would only time out (seconds), and a pass left behind only fails once the connection closes.
   */
  async stop(): Promise<void> {
    this.stopped = true
    clearInterval(this.timer)
    for (const t of this.pending) clearTimeout(t)
    if (this.connected()) await this.running
  }

  private connected(): boolean {
    return this.options.connected?.() ?? true
  }

  /** One pass now (none when one is running); its failures are logged, never thrown. */
  pass(): Promise<void> {
    if (this.stopped || this.nc.isClosed() || !this.connected()) return Promise.resolve()
    this.running ??= reconcileClaims(this.nc, this.naming)
      .then(
        ({ purged }) => {
          if (purged > 0) this.options.log.info({ purged }, "claims: removed messages left below a consumer's ack floor (a server restart lost their removal)")
        },
        (error: unknown) => this.options.log.debug({ error: String(error) }, "claims: reconcile pass failed; next pass later")
      )
      .finally(() => {
        this.running = undefined
      })
    return this.running
  }

  private afterReconnect(): void {
    const t = setTimeout(() => {
      this.pending.delete(t)
      void this.pass()
    }, this.options.afterReconnectMs ?? 3_000)
    t.unref()
    this.pending.add(t)
  }
}
