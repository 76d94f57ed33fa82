/**
 * Reading the task-state read model (DESIGN §4): every task's current state, folded from the log
 * by docs.ts and kept in a key-value bucket under `<tenant>.<taskId>`, for listings. It trails the
 * log by the projection's lag; GET of one task reads the log itself.
 */
import type { KV } from "nats"
import type { TaskState } from "../src/domain/events.js"
import { taskStateKey } from "../streams/definitions.js"

const decoder = new TextDecoder()

export const readTaskState = async (kv: KV, tenant: string, taskId: string): Promise<TaskState | null> => {
  const entry = await kv.get(taskStateKey(tenant, taskId))
  return entry === null || entry.value.length === 0 ? null : (JSON.parse(decoder.decode(entry.value)) as TaskState)
}

/** Every task state in the bucket (optionally of one tenant), keyed `<tenant>.<taskId>`. */
export const readAllTaskStates = async (kv: KV, tenant?: string): Promise<Map<string, TaskState>> => {
  const keys: Array<string> = []
  // Keys of tasks only: `<tenant>.<taskId>` (the writer's barrier key starts with "_").
  for await (const key of await kv.keys(tenant === undefined ? ">" : `${tenant}.*`)) if (!key.startsWith("_")) keys.push(key)
  const out = new Map<string, TaskState>()
  await Promise.all(
    keys.map(async (key) => {
      const entry = await kv.get(key)
      if (entry !== null && entry.value.length > 0) out.set(key, JSON.parse(decoder.decode(entry.value)) as TaskState)
    })
  )
  return out
}
