/**
 * The dispatcher (DESIGN §3): turns TaskCreated and TaskRequeued into a claim message on
 * `<root>.claim.<tenant>.<command>.<priority>`. The message id is derived from the event, so a
 * dispatcher that is replayed or restarted mid-stream adds no duplicate work (JetStream dedup).
 */
import { Effect } from "effect"
import type { StoredEvent } from "../src/domain/events.js"
import { fold } from "../src/domain/events.js"
import type { EventLog } from "../src/eventlog/EventLog.js"
import type { PipelinedPublisher } from "../src/eventlog/pipeline.js"
import { claimPublication, type ClaimMessage } from "../src/claims/message.js"
import { ProjectionError, type Projection } from "./runtime.js"

const createdClaim = (stored: StoredEvent): ClaimMessage | undefined => {
  const e = stored.event
  if (e.type !== "TaskCreated") return undefined
  return { taskId: e.taskId, tenant: e.tenant, command: e.command, priority: e.priority, eventSeq: stored.seq, ...(e.runAt ? { runAt: e.runAt } : {}) }
}

const requeuedClaim = async (log: EventLog, stored: StoredEvent): Promise<ClaimMessage | undefined> => {
  const e = stored.event
  if (e.type === "TaskRequeued") {
    // A requeue carries no command or priority: the task's history has them.
    const state = fold((await log.readTask(e.tenant, e.taskId)).events)
    if (state === null) return undefined
    return { taskId: e.taskId, tenant: e.tenant, command: state.command, priority: state.priority, eventSeq: stored.seq }
  }
  return undefined
}

export const dispatcher = (log: EventLog, claims: PipelinedPublisher): Projection => ({
  name: "dispatcher",
  handles: ["TaskCreated", "TaskRequeued"],
  // Publishes leave in start order, so lanes stay FIFO while many are in flight.
  concurrency: 256,
  handle: (stored) =>
    Effect.tryPromise({
      try: async () => {
        // A create publishes before any await, so claims leave in the order events arrived.
        const claim = createdClaim(stored) ?? (await requeuedClaim(log, stored))
        if (claim === undefined) return
        const { subject, data, headers } = claimPublication(log.naming, claim)
        const result = await claims.publish(subject, data, headers)
        if (!result.ok) throw result.error
      },
      catch: (cause) => new ProjectionError({ projection: "dispatcher", message: "dispatch failed", cause })
    })
})
