/**
 * The open-task index as the projections keep it (src/eventlog/openTasks.ts says what it is): the
 * buckets it is written and filled from, and the compaction of its delete markers, run by the broker
 * that leads the projections.
 */
import type { Connection } from "../src/eventlog/connection.js"
import type { Bucket, IndexStore } from "../src/eventlog/kv.js"
import { compactOpenTasks, MARKERS_PER_PASS } from "../src/eventlog/openTasks.js"
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

/** How often the leader looks at how many entries the fold removed. */
export const OPEN_TASKS_CHECK_EVERY_MS = 10_000
/** Entries removed since the last pass below which no pass is made (unless the last is long ago). */
export const OPEN_TASKS_COMPACT_FROM = 10_000
/** A pass at least this often while leading: markers an earlier leader left. */
export const OPEN_TASKS_COMPACT_AT_LEAST_EVERY_MS = 10 * 60_000

export interface OpenTaskUpkeepOptions {
  /** Whether this broker leads the projections now: a check on any other does nothing. */
  readonly leading: () => boolean
  readonly connected?: () => boolean
  readonly log: Logger
  /** Entries this broker's fold has removed so far (each left a delete marker). */
  readonly removed: () => number
  /** Time between checks. Default OPEN_TASKS_CHECK_EVERY_MS. */
  readonly everyMs?: number
  /** Default OPEN_TASKS_COMPACT_FROM. */
  readonly compactFrom?: number
  /** Default OPEN_TASKS_COMPACT_AT_LEAST_EVERY_MS. */
  readonly atLeastEveryMs?: number
}

/**
 * Compacts the index while this broker leads the projections, until stopped; failures are logged.
 * A check costs nothing on the server. A pass (which reads the whole index, headers only) is made
 * once the fold has removed `compactFrom` entries since the last one, or when the last pass is
 * `atLeastEveryMs` ago: a scan then reads the open tasks and at most about `compactFrom` markers
 * more — where a backlog's tasks leave thousands of markers a second.
 */
export class OpenTaskUpkeep extends PeriodicPass {
  constructor(nc: Connection, index: Pick<OpenTaskIndex, "name" | "bucket">, options: OpenTaskUpkeepOptions) {
    const compactFrom = options.compactFrom ?? OPEN_TASKS_COMPACT_FROM
    const atLeastEveryMs = options.atLeastEveryMs ?? OPEN_TASKS_COMPACT_AT_LEAST_EVERY_MS
    let removedAtPass = 0
    let passedAt = Date.now()
    const pass = async (signal: AbortSignal) => {
      if (!options.leading()) return
      const removed = options.removed()
      if (removed - removedAtPass < compactFrom && Date.now() - passedAt < atLeastEveryMs) return
      try {
        const result = await compactOpenTasks(nc, index.bucket, index.name, signal)
        // A pass that stopped at its limit goes on at the next check (a stopped one ends the upkeep).
        if (result.markers < MARKERS_PER_PASS) removedAtPass = removed
        passedAt = Date.now()
        if (result.purged > 0) options.log.debug({ ...result }, "open tasks: compacted the index's delete markers")
      } catch (error) {
        options.log.debug({ error: String(error) }, "open tasks: compacting the index failed; next check later")
      }
    }
    super(nc, pass, { everyMs: options.everyMs ?? OPEN_TASKS_CHECK_EVERY_MS, ...(options.connected !== undefined ? { connected: options.connected } : {}) })
  }
}
