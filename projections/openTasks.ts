/**
 * The open-task index as the projections keep it (src/eventlog/openTasks.ts says what it is): the
 * buckets it is written and filled from, and the compaction of its delete markers, run by the broker
 * that leads the projections.
 */
import type { Connection } from "../src/eventlog/connection.js"
import type { Bucket, IndexStore } from "../src/eventlog/kv.js"
import { compactOpenTasks } from "../src/eventlog/openTasks.js"
import { PeriodicPass } from "../src/eventlog/periodic.js"
import type { Logger } from "../src/log/log.js"

export interface OpenTaskIndex {
  /** The index's bucket name. */
  readonly name: string
  /** The index read and written under revisions (the ready key, compaction). */
  readonly bucket: Bucket
  /** The index as the task-state fold writes it: unanswered puts and deletes, then a barrier. */
  readonly writer: IndexStore
  /** The task-state documents, read once to fill an index that is not ready. */
  readonly documents: Pick<Bucket, "watch">
}

/** How often the leader compacts the index. */
export const OPEN_TASKS_COMPACT_EVERY_MS = 10 * 60_000

export interface OpenTaskUpkeepOptions {
  /** Whether this broker leads the projections now: a pass on any other does nothing. */
  readonly leading: () => boolean
  readonly connected?: () => boolean
  readonly log: Logger
  /** Time between passes. Default OPEN_TASKS_COMPACT_EVERY_MS. */
  readonly everyMs?: number
}

/** Runs `compactOpenTasks` while this broker leads the projections, until stopped; failures are logged. */
export class OpenTaskUpkeep extends PeriodicPass {
  constructor(nc: Connection, index: Pick<OpenTaskIndex, "name" | "bucket">, options: OpenTaskUpkeepOptions) {
    const pass = async () => {
      if (!options.leading()) return
      try {
        const result = await compactOpenTasks(nc, index.bucket, index.name)
        if (result.purged > 0) options.log.debug({ ...result }, "open tasks: compacted the index's delete markers")
      } catch (error) {
        options.log.debug({ error: String(error) }, "open tasks: compacting the index failed; next pass later")
      }
    }
    super(nc, pass, { everyMs: options.everyMs ?? OPEN_TASKS_COMPACT_EVERY_MS, ...(options.connected !== undefined ? { connected: options.connected } : {}) })
  }
}
