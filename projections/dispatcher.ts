/**
 * The dispatcher (DESIGN §3): turns TaskCreated and TaskRequeued into a claim message on the task's
 * lane, `<root>.claim.<tenant>.<command>.<priority>`. The message id is derived from the event, so
 * a dispatcher that replays events after a restart adds no duplicate work (JetStream dedup). A
 * create's claim carries the TaskCreated itself, so a worker claims without reading the log.
 * Publishes leave in log order, so a lane stays FIFO; a failed one is retried until it is stored.
 *
 * On a claims stream of one replica the dispatcher is its only writer (under the projections
 * lease), so claims go without an ack each and are counted in by a barrier per burst
 * (eventlog/counted.ts): one server message per claim instead of two. A burst that does not add up
 * (a replay's duplicates, a refused publish) is published again with acks, as on a cluster.
 */
import { Duration, Schedule } from "effect"
import { tryThenRetry } from "../src/domain/retry.js"
import { claimOfCreate, claimPublication, type ClaimMessage } from "../src/eventlog/claims/message.js"
import type { dedupHeaders, PipelinedPublisher } from "../src/eventlog/pipeline.js"
import { CountedPublisher } from "../src/eventlog/counted.js"
import type { AppendResult } from "../src/eventlog/EventLog.js"
import { claimBarrierSubject, type Naming } from "../streams/definitions.js"
import type { Change } from "./docs.js"
import type { Sink } from "./runtime.js"

/** A claim the claims stream did not take: again, jittered, from 100 ms up to 5 s apart. */
export const DISPATCH_RETRY = Schedule.union(Schedule.exponential(Duration.millis(100), 2), Schedule.spaced(Duration.seconds(5))).pipe(Schedule.jittered)

const claimOf = ({ stored, after }: Change): ClaimMessage | undefined => {
  // Only a task still waiting for a worker: one already claimed or ended was dispatched before.
  if (after === null || after.status !== "PENDING") return undefined
  const e = stored.event
  if (e.type === "TaskCreated") return claimOfCreate({ ...stored, event: e })
  if (e.type === "TaskRequeued") return { taskId: e.taskId, tenant: e.tenant, command: after.command, priority: after.priority, eventSeq: stored.seq }
  return undefined
}

/**
 * Publishes until the stream stores it (DISPATCH_RETRY), the plain call first; rejects with the
 * last error once `stopped` (the sink is going away: the event is folded again by the next run).
 */
export const publishUntilStored = async (publish: () => Promise<AppendResult>, stopped: () => boolean): Promise<void> => {
  const result = await tryThenRetry(publish, (attempt) => attempt.ok && !attempt.value.ok && !stopped(), DISPATCH_RETRY)
  if (!result.ok) throw result.error
}

/** A message derived from the log, with the message id that keeps a replay of it from being stored twice. */
export interface DerivedMessage {
  readonly subject: string
  readonly data: Uint8Array
  readonly headers: ReturnType<typeof dedupHeaders>
}

/**
 * Publishes derived messages to one stream, each until stored. On a stream of one replica, whose
 * only writer the caller is, they are counted in by a barrier (eventlog/counted.ts); on a cluster,
 * and for any the barrier could not confirm, acked one by one.
 */
export const derivedPublisher = (publisher: PipelinedPublisher, barrierSubject: string, replicas: number) => {
  const counted = replicas === 1 ? new CountedPublisher(publisher, barrierSubject) : undefined
  return ({ subject, data, headers }: DerivedMessage, stopped: () => boolean): Promise<void> => {
    const acked = () => publishUntilStored(() => publisher.publish(subject, data, headers), stopped)
    return counted === undefined ? acked() : counted.publish(subject, data, headers).then((stored) => (stored ? undefined : acked()))
  }
}

/** `replicas`: the claims stream's; with one, claims are counted in rather than acked one by one. */
export const dispatcher = (claims: PipelinedPublisher, naming: Naming, replicas = 1): Sink => {
  let stopped = false
  const publish = derivedPublisher(claims, claimBarrierSubject(naming), replicas)
  return {
    name: "dispatcher",
    apply: (change) => {
      const claim = claimOf(change)
      if (claim === undefined) return undefined
      return publish(claimPublication(naming, claim), () => stopped)
    },
    stop: () => {
      stopped = true
    }
  }
}
