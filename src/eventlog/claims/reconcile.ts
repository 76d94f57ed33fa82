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
import { PeriodicPass } from "../periodic.js"
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
export class ClaimReconciler extends PeriodicPass {
  constructor(nc: NatsConnection, naming: Naming, options: ClaimReconcilerOptions) {
    const pass = () =>
      reconcileClaims(nc, naming).then(
        ({ purged }) => {
          if (purged > 0) options.log.info({ purged }, "claims: removed messages left below a consumer's ack floor (a server restart lost their removal)")
        },
        (error: unknown) => options.log.debug({ error: String(error) }, "claims: reconcile pass failed; next pass later")
      )
    super(nc, pass, {
      everyMs: options.everyMs ?? 15_000,
      afterReconnectMs: options.afterReconnectMs ?? 3_000,
      ...(options.connected !== undefined ? { connected: options.connected } : {})
    })
  }
}
