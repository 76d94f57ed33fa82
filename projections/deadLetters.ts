/**
 * The dead-letter index (DESIGN §4): a key-value entry per dead-lettered task, keyed
 * `<tenant>.<command>.<taskId>`, so the queue of one tenant and command lists without scanning the
 * log. A requeue or a purge removes the entry. Replaying the log rebuilds it exactly.
 *
 * A removed entry leaves a delete marker in the bucket, and every listing reads the markers too:
 * `compactDeadLetterIndex` takes away those older than 10 minutes, on the broker that leads the
 * projections (any broker could: each purge stops at its marker, so an entry written to the key
 * after it stays — but one scan of the bucket per pass is enough).
 */
import type { Connection } from "../src/eventlog/connection.js"
import { findDeleteMarkers, purgeDeleteMarkers, type Bucket } from "../src/eventlog/kv.js"
import { PeriodicPass } from "../src/eventlog/periodic.js"
import type { Logger } from "../src/log/log.js"
import { deadLetterBucket, deadLetterKey, type Naming } from "../streams/definitions.js"
import type { Sink } from "./runtime.js"
import type { DeadLetterEntry } from "../src/tasks/view.js"
import { utf8 } from "../src/eventlog/utf8.js"

export const deadLetters = (kv: Bucket): Sink => ({
  name: "dead-letters",
  apply: ({ stored, after }) => {
    const e = stored.event
    if (after === null) return undefined
    const key = deadLetterKey(e.tenant, after.command, e.taskId)
    if (e.type === "TaskDeadLettered") {
      // The current state decides, so replaying an old dead letter after its requeue adds nothing.
      if (after.status !== "DEAD_LETTERED" || after.purged) return undefined
      const entry: DeadLetterEntry = { taskId: e.taskId, tenant: e.tenant, command: after.command, reason: e.reason, attempts: after.attempts, deadLetteredAt: e.at }
      return kv.put(key, utf8(JSON.stringify(entry)))
    }
    if (e.type === "TaskRequeued" || e.type === "TaskPurged") return kv.delete(key)
    return undefined
  }
})

/** Markers removed once this old, and how often a broker looks for them. */
export const DEAD_LETTER_MARKER_AGE_MS = 10 * 60_000
/** At most this many markers removed per pass; the next pass goes on. */
export const DEAD_LETTER_MARKERS_PER_PASS = 10_000

/** One pass: removes the index's delete markers older than `olderThanMs`. Safe from any broker, at any time. */
export const compactDeadLetterIndex = async (conn: Connection, kv: Bucket, naming: Naming, log: Logger, olderThanMs = DEAD_LETTER_MARKER_AGE_MS, signal?: AbortSignal): Promise<number> => {
  const markers = await findDeleteMarkers(kv, olderThanMs, DEAD_LETTER_MARKERS_PER_PASS)
  if (markers.length === 0) return 0
  const purged = await purgeDeleteMarkers(conn, deadLetterBucket(naming), markers, undefined, signal)
  log.debug({ markers: markers.length, purged }, "dead letters: removed the delete markers of requeued and purged tasks")
  return purged
}

export interface DeadLetterUpkeepOptions {
  /** Whether this broker leads the projections now: a pass on any other does nothing. */
  readonly leading: () => boolean
  readonly connected?: () => boolean
  readonly log: Logger
  /** Markers removed once this old. Default DEAD_LETTER_MARKER_AGE_MS. */
  readonly olderThanMs?: number
}

/**
 * Runs `compactDeadLetterIndex` every DEAD_LETTER_MARKER_AGE_MS while this broker leads the
 * projections, until stopped; failures are logged, the next pass tries again.
 */
export class DeadLetterUpkeep extends PeriodicPass {
  constructor(nc: Connection, kv: Bucket, naming: Naming, options: DeadLetterUpkeepOptions) {
    const pass = async (signal: AbortSignal) => {
      if (!options.leading()) return
      await compactDeadLetterIndex(nc, kv, naming, options.log, options.olderThanMs, signal).catch((error: unknown) =>
        options.log.debug({ error: String(error) }, "dead letters: removing delete markers failed; next pass later")
      )
    }
    super(nc, pass, { everyMs: DEAD_LETTER_MARKER_AGE_MS, ...(options.connected !== undefined ? { connected: options.connected } : {}) })
  }
}
