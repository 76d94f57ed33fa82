/**
 * The task-state read model (DESIGN §4): every task's current state folded from the log into a
 * key-value bucket, for listings and queue statistics. Events of one task are applied in order
 * (a chain per task) while different tasks proceed concurrently; an event at or below the stored
 * version is skipped, so a redelivered or replayed event changes nothing. Each event records the
 * sequence it was appended after (`Codeq-Prev-Seq`): when the stored document is not at that
 * predecessor — another broker instance took an event of this task, or an update failed — the
 * task is refolded from the log instead. Writes are compare-and-set on the entry's revision, so
 * brokers sharing the projection never overwrite a newer document with an older one.
 */
import { Effect } from "effect"
import type { KV } from "nats"
import { evolve, fold, type StoredEvent, type TaskState } from "../src/domain/events.js"
import type { EventLog } from "../src/eventlog/EventLog.js"
import { parseEventSubject, taskStateKey } from "../streams/definitions.js"
import { ProjectionError, type Projection } from "./runtime.js"
import type { PipelinedKv } from "../src/eventlog/kv.js"

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

export const taskState = (kv: PipelinedKv, log: EventLog): Projection => {
  const naming = log.naming
  const chains = new Map<string, Promise<void>>()
  const apply = async (key: string, tenant: string, taskId: string, stored: StoredEvent) => {
    for (let attempt = 0; ; attempt++) {
      const entry = await kv.get(key)
      const current = entry === null || entry.value.length === 0 ? null : (JSON.parse(decoder.decode(entry.value)) as TaskState)
      if (current !== null && current.version >= stored.seq) return
      // In order (the document is at this event's predecessor): evolve. Otherwise an event of this
      // task is missing here — another broker's, or one whose update failed — and the log decides.
      const inOrder = stored.prevSeq !== undefined && (current?.version ?? 0) === stored.prevSeq
      const next = inOrder ? evolve(current, stored) : fold((await log.readTask(tenant, taskId)).events)
      if (next === null || next === current) return
      // Compare-and-set on the entry's revision: a concurrent writer makes us read and decide again.
      const written = await kv.put(key, encoder.encode(JSON.stringify(next)), entry?.revision ?? 0)
      if (written === "ok") return
      if (attempt >= 10) throw new Error(`task-state ${key}: still conflicting after ${attempt + 1} attempts`)
    }
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
          // One task's events in order within this broker: each waits for the previous one.
          const previous = chains.get(key) ?? Promise.resolve()
          const run = previous.then(() => apply(key, tenant, taskId, stored))
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
