/**
 * The task-state read model (DESIGN §4): every task's current state folded from the log into a
 * key-value bucket, for listings and queue statistics. Events of one task are applied in order
 * (a chain per task) while different tasks proceed concurrently; an event at or below the stored
 * version is skipped, so a redelivered or replayed event changes nothing. If applying an event
 * fails, later events of that task could overtake it, so the task is marked dirty and its next
 * update refolds it from the log (the truth) instead of trusting the stored document.
 */
import { Effect } from "effect"
import type { KV } from "nats"
import { evolve, fold, type StoredEvent, type TaskState } from "../src/domain/events.js"
import type { EventLog } from "../src/eventlog/EventLog.js"
import { parseEventSubject, taskStateKey } from "../streams/definitions.js"
import { ProjectionError, type Projection } from "./runtime.js"

const encoder = new TextEncoder()
const decoder = new TextDecoder()

export const readTaskState = async (kv: KV, tenant: string, taskId: string): Promise<TaskState | null> => {
  const entry = await kv.get(taskStateKey(tenant, taskId))
  return entry === null || entry.value.length === 0 ? null : (JSON.parse(decoder.decode(entry.value)) as TaskState)
}

/** Every task state in the bucket (optionally of one tenant), keyed `<tenant>.<taskId>`. */
export const readAllTaskStates = async (kv: KV, tenant?: string): Promise<Map<string, TaskState>> => {
  const keys: Array<string> = []
  for await (const key of await kv.keys(tenant === undefined ? ">" : `${tenant}.*`)) keys.push(key)
  const out = new Map<string, TaskState>()
  await Promise.all(
    keys.map(async (key) => {
      const entry = await kv.get(key)
      if (entry !== null && entry.value.length > 0) out.set(key, JSON.parse(decoder.decode(entry.value)) as TaskState)
    })
  )
  return out
}

export const taskState = (kv: KV, log: EventLog): Projection => {
  const naming = log.naming
  const chains = new Map<string, Promise<void>>()
  const dirty = new Set<string>()
  const apply = async (key: string, tenant: string, taskId: string, stored: StoredEvent) => {
    if (dirty.has(key)) {
      const folded = fold((await log.readTask(tenant, taskId)).events)
      if (folded !== null) await kv.put(key, encoder.encode(JSON.stringify(folded)))
      dirty.delete(key)
      return
    }
    const current = await readTaskState(kv, tenant, taskId)
    if (current !== null && current.version >= stored.seq) return
    const next = evolve(current, stored)
    if (next === null || next === current) return
    await kv.put(key, encoder.encode(JSON.stringify(next)))
  }
  return {
    name: "task-state",
    handles: [
      "TaskCreated", "TaskClaimed", "TaskHeartbeat", "TaskAbandoned", "TaskNacked", "TaskLeaseExpired", "TaskCompleted",
      "TaskFailed", "TaskDeadLettered", "TaskRequeued", "TaskCancelled", "TaskPurged", "WebhookDelivered", "WebhookFailed", "TaskRejected"
    ],
    concurrency: 128,
    handle: (stored) =>
      Effect.tryPromise({
        try: () => {
          const where = parseEventSubject(naming, stored.subject)
          const tenant = where?.tenant ?? stored.event.tenant
          const taskId = where?.taskId ?? stored.event.taskId
          const key = taskStateKey(tenant, taskId)
          // One task's events in order: each waits for the previous one of the same task.
          const previous = chains.get(key) ?? Promise.resolve()
          const run = previous.then(() => apply(key, tenant, taskId, stored)).catch((error: unknown) => {
            dirty.add(key)
            throw error
          })
          const tail = run.catch(() => undefined)
          chains.set(key, tail)
          void tail.then(() => {
            if (chains.get(key) === tail) chains.delete(key)
          })
          return run
        },
        catch: (cause) => new ProjectionError({ projection: "task-state", message: "read model update failed", cause })
      })
  }
}
