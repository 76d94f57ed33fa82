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
import { purgeSubjectBelow } from "../streams.js"
import type { Logger } from "../../log/log.js"

export interface ReconcileResult {
  /** Lanes looked at. */
  readonly lanes: number
  /** Messages removed below an ack floor. */
  readonly purged: number
}

/** What one lane consumer reports, as far as a pass looks at it. */
export interface LaneState {
  /** Messages the stream holds on the lane's subject. */
  readonly stored: number
  /** Not yet delivered. */
  readonly pending: number
  /** Delivered and not yet acknowledged (nak'ed ones waiting for their delay included). */
  readonly ackPending: number
  /** The consumer's ack floor: every message of the lane up to this stream sequence is acknowledged. */
  readonly ackFloor: number
}

/**
 * The stream sequence below which a lane's messages may be purged, or undefined when none may.
 *
 * WHY a floor of 0 purges nothing: nats-server 2.9 purges every message of the subject when a
 * filtered purge names sequence 1 (it bounds the purge only from sequence 2 on; purgeSubjectBelow
 * in streams.ts refuses that for every caller), so a purge "below floor + 1" with a floor of 0
 * removed the lane's whole queue. And the counts are read in
 * two requests while workers take and acknowledge claims, so under load they can show messages
 * "below the floor" that are not: measured, a lane whose first claim waited for its runAt (floor
 * 0) lost 20,000–47,000 waiting claims to one pass, and their tasks were never delivered. Only the
 * floor bounds what goes; the counts only decide whether to ask.
 */
export const purgeBelow = (lane: LaneState): number | undefined =>
  lane.ackFloor >= 1 && lane.stored - lane.pending - lane.ackPending > 0 ? lane.ackFloor + 1 : undefined

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
    const seq = purgeBelow({ stored: stored[filter] ?? 0, pending: consumer.num_pending, ackPending: consumer.num_ack_pending, ackFloor: consumer.ack_floor.stream_seq })
    if (seq === undefined) continue
    purged += await purgeSubjectBelow(jsm, stream, filter, seq)
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
