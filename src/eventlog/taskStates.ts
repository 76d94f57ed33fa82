/**
 * Reading the task-state read model (DESIGN §4): every task's current state, folded from the log
 * by docs.ts and kept in a key-value bucket under `<tenant>.<taskId>`, for listings. It trails the
 * log by the projection's lag; GET of one task reads the log itself.
 */
import type { KV } from "nats"
import type { Connection } from "./connection.js"
import type { TaskState } from "../domain/events.js"
import { taskStateKey } from "../../streams/definitions.js"

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

/**
 * Calls `visit` with every task state of `tenant` in the bucket, streamed: one ordered consumer
 * over the tenant's keys (last value of each), nothing held but the entry being visited. Costs one
 * message per task of the tenant (ended ones included) and no request per key, so it suits counts
 * over tenants with many tasks where `readAllTaskStates` would hold every state in memory.
 * Entries written while the scan runs may or may not be seen.
 */
export const scanTaskStates = async (kv: KV, tenant: string, visit: (state: TaskState) => void): Promise<void> => {
  const scan: { initialized: boolean; stop?: () => void } = { initialized: false }
  // Called once every value that existed when the watch started has been queued: ends the scan.
  // It may run inside `watch()` already (no values, or all of them queued before it returned).
  const done = () => {
    scan.initialized = true
    scan.stop?.()
  }
  // Deletes are skipped below, not by the watch: a skipped last entry would never end the scan.
  const watch = await kv.watch({ key: `${tenant}.*`, initializedFn: done })
  scan.stop = () => watch.stop()
  // A stopped iterator still yields what was queued before the stop.
  if (scan.initialized) watch.stop()
  for await (const entry of watch) {
    if (entry.operation !== "PUT" || entry.value.length === 0) continue
    visit(JSON.parse(decoder.decode(entry.value)) as TaskState)
  }
}

/** The task-state bucket of one deployment, opened on first use and kept. */
export class TaskStateReader {
  private kv: Promise<KV> | undefined

  constructor(
    private readonly conn: Connection,
    private readonly bucket: string
  ) {}

  private open(): Promise<KV> {
    this.kv ??= this.conn.jetstream().views.kv(this.bucket)
    return this.kv
  }

  async readAll(tenant?: string): Promise<Map<string, TaskState>> {
    return readAllTaskStates(await this.open(), tenant)
  }

  async scan(tenant: string, visit: (state: TaskState) => void): Promise<void> {
    return scanTaskStates(await this.open(), tenant, visit)
  }
}
