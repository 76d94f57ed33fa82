/**
 * Reading the task-state read model (DESIGN §4): every task's current state, folded from the log
 * by docs.ts and kept in a key-value bucket under `<tenant>.<taskId>`, for listings. Readers ask the
 * projections' leader to write up to the log's end first; GET of one task reads the log itself.
 */
import type { KV } from "nats"
import type { Connection } from "./connection.js"
import type { TaskState } from "../domain/events.js"
import { taskStateKey } from "../../streams/definitions.js"
import { scanBucket } from "./kv.js"
import { keptUnlessFailed } from "./kept.js"

const decoder = new TextDecoder()

export const readTaskState = async (kv: KV, tenant: string, taskId: string): Promise<TaskState | null> => {
  const entry = await kv.get(taskStateKey(tenant, taskId))
  return entry === null || entry.value.length === 0 ? null : (JSON.parse(decoder.decode(entry.value)) as TaskState)
}

/**
 * Calls `visit` with every task state of `tenant` in the bucket, streamed (kv.ts's `scanBucket`):
 * nothing held but the entry being visited. Costs one message per task of the tenant (ended ones
 * included) and no request per key. Entries written while the scan runs may or may not be seen.
 */
export const scanTaskStates = (kv: KV, tenant: string, visit: (state: TaskState) => void): Promise<void> =>
  scanBucket(kv, `${tenant}.*`, (entry) => {
    if (entry.operation === "PUT" && entry.value.length > 0) visit(JSON.parse(decoder.decode(entry.value)) as TaskState)
  })

/** The task-state bucket of one deployment, opened on first use and kept. */
export class TaskStateReader {
  private readonly open: () => Promise<KV>

  constructor(conn: Connection, bucket: string) {
    this.open = keptUnlessFailed(() => conn.jetstream().views.kv(bucket))
  }

  async scan(tenant: string, visit: (state: TaskState) => void): Promise<void> {
    return scanTaskStates(await this.open(), tenant, visit)
  }

  /** One task's state in the bucket, or null. */
  async get(tenant: string, taskId: string): Promise<TaskState | null> {
    return readTaskState(await this.open(), tenant, taskId)
  }
}
