/**
 * The dead-letter index (DESIGN §4): a key-value entry per dead-lettered task, keyed
 * `<tenant>.<command>.<taskId>`, so the queue of one tenant and command lists without scanning the
 * log. A requeue or a purge removes the entry. Replaying the log rebuilds it exactly.
 */
import { Effect } from "effect"
import type { KV } from "nats"
import { fold, type StoredEvent } from "../src/domain/events.js"
import type { EventLog } from "../src/eventlog/EventLog.js"
import { deadLetterKey } from "../streams/definitions.js"
import { ProjectionError, type Projection } from "./runtime.js"

/** One dead-letter entry as listed to operators. */
export interface DeadLetterEntry {
  readonly taskId: string
  readonly tenant: string
  readonly command: string
  readonly reason: string
  readonly attempts: number
  readonly deadLetteredAt: string
}

const encoder = new TextEncoder()

const apply = async (log: EventLog, kv: KV, stored: StoredEvent): Promise<void> => {
  const e = stored.event
  const state = fold((await log.readTask(e.tenant, e.taskId)).events)
  if (state === null) return
  const key = deadLetterKey(e.tenant, state.command, e.taskId)
  if (e.type === "TaskDeadLettered") {
    // The current state decides, so replaying an old dead letter after its requeue adds nothing.
    if (state.status !== "DEAD_LETTERED" || state.purged) return
    const entry: DeadLetterEntry = { taskId: e.taskId, tenant: e.tenant, command: state.command, reason: e.reason, attempts: state.attempts, deadLetteredAt: e.at }
    await kv.put(key, encoder.encode(JSON.stringify(entry)))
  } else {
    await kv.delete(key)
  }
}

export const deadLetters = (log: EventLog, kv: KV): Projection => ({
  name: "dead-letters",
  handles: ["TaskDeadLettered", "TaskRequeued", "TaskPurged"],
  concurrency: 1,
  handle: (stored) =>
    Effect.tryPromise({
      try: () => apply(log, kv, stored),
      catch: (cause) => new ProjectionError({ projection: "dead-letters", message: "dead-letter index update failed", cause })
    })
})
