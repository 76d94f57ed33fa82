/**
 * The open-task index (DESIGN §4): a key-value entry per task that waits for a worker or is leased,
 * under the task's task-state key, written by the task-state projection with the task's document
 * (projections/docs.ts). Queue statistics read it instead of every document a tenant ever had: what
 * they cost follows the tasks still open, not the log's length, nor the payloads and results the
 * documents carry.
 *
 * Three things keep it true:
 * - **Ready.** A deployment whose documents predate the index has none of its entries. The
 *   projections' leader fills it from the documents before its first fold (`backfillOpenTasks`)
 *   and then writes the ready key; until that key is there, readers count from the documents.
 * - **Written with the documents.** An entry is written when its task's document is written open,
 *   removed when the document is written ended, before the document on the same connection.
 * - **Compacted.** A removed entry leaves a delete marker, read by every scan. A pass
 *   (`compactOpenTasks`) purges each marked key below its marker.
 */
import type { Connection } from "./connection.js"
import { findDeleteMarkers, purgeDeleteMarkers, scanBucket, type Bucket, type IndexStore } from "./kv.js"
import { utf8 } from "./utf8.js"
import { openTaskEntry, type OpenTask } from "../domain/openTask.js"
import type { TaskState } from "../domain/events.js"

/** Written once the index holds every open task; not a tenant's key (tenants start with a lowercase letter). */
export const OPEN_INDEX_READY_KEY = "_codeq.ready"

const decoder = new TextDecoder()

/** Whether the index holds every open task (its ready key is written). */
export const openIndexReady = async (index: Pick<Bucket, "get">): Promise<boolean> => {
  const entry = await index.get(OPEN_INDEX_READY_KEY)
  return entry !== null && entry.operation === "PUT"
}

/**
 * The open tasks of `tenant` in the index, by key. A key written again while the scan runs (a task
 * claimed meanwhile) may be visited twice: its last entry counts, once.
 */
export const readOpenTasks = async (index: Pick<Bucket, "watch">, tenant: string): Promise<Map<string, OpenTask>> => {
  const open = new Map<string, OpenTask>()
  await scanBucket(index, `${tenant}.*`, (entry) => {
    if (entry.operation === "PUT" && entry.value.length > 0) open.set(entry.key, JSON.parse(decoder.decode(entry.value)) as OpenTask)
    else open.delete(entry.key)
  })
  return open
}

/** Puts between two barriers while filling the index. */
const BACKFILL_BARRIER_EVERY = 1_000

/**
 * Fills an index that is not ready from the task-state documents: purges whatever a fill cut short
 * left, writes an entry for every open document, then the ready key. Nothing may write the
 * documents meanwhile (the projections' leader calls it before it folds). Resolves with the
 * entries written, or undefined when the index was ready already.
 */
export const backfillOpenTasks = async (
  conn: Connection,
  taskStates: Pick<Bucket, "watch">,
  index: Pick<Bucket, "get" | "put">,
  writer: IndexStore,
  indexBucket: string
): Promise<number | undefined> => {
  if (await openIndexReady(index)) return undefined
  const jsm = await conn.jetstreamManager({ checkAPI: false })
  await jsm.streams.purge(`KV_${indexBucket}`)
  const open: Array<readonly [string, string]> = []
  await scanBucket(taskStates, ">", (entry) => {
    if (entry.operation !== "PUT" || entry.value.length === 0 || entry.key.startsWith("_")) return
    const summary = openTaskEntry(JSON.parse(decoder.decode(entry.value)) as TaskState)
    if (summary !== undefined) open.push([entry.key, summary])
  })
  for (let i = 0; i < open.length; i += BACKFILL_BARRIER_EVERY) {
    for (const [key, summary] of open.slice(i, i + BACKFILL_BARRIER_EVERY)) writer.putUnacked(key, utf8(summary))
    await writer.barrier()
  }
  await index.put(OPEN_INDEX_READY_KEY, utf8(new Date().toISOString()))
  return open.length
}

export interface CompactionResult {
  /** Delete markers it found. */
  readonly markers: number
  /** Messages the purges removed. */
  readonly purged: number
}

/** Markers removed per pass at most; the next pass goes on. */
export const MARKERS_PER_PASS = 20_000
/**
 * Purges in flight at once. WHY few: each is a JetStream API request, and the server answers
 * those one after another — with 64 at once, the projections' and workers' pull requests queued
 * behind them and the projections fell 11 s behind in a 200,000-task backlog (287 ms without).
 */
const PURGE_CONCURRENCY = 4

/**
 * One compaction pass over the index (see the top): finds its delete markers and purges each key
 * below its marker (kv.ts, as the dead-letter index's upkeep does), so a write to the key after
 * the marker stays, whoever purges and whenever. Any broker may run it at any time.
 *
 * WHY a purge per key and not one purge of everything below the stream's end (with the live
 * entries copied above it first): a purge below a sequence moves every consumer of the stream
 * past it, and a listing that is reading the index then (a nats.js watch: an ordered consumer)
 * starts over and sees the same entries again and again — tried: one scan of 1,000 entries during
 * such a purge counted 64,733. A purge of one key's old messages leaves other readers alone.
 * `signal` aborted: no purge starts after it (the broker stopping); the next pass finishes.
 */
export const compactOpenTasks = async (conn: Connection, index: Pick<Bucket, "watch">, indexBucket: string, signal?: AbortSignal): Promise<CompactionResult> => {
  const markers = await findDeleteMarkers(index, 0, MARKERS_PER_PASS)
  const purged = markers.length === 0 ? 0 : await purgeDeleteMarkers(conn, indexBucket, markers, PURGE_CONCURRENCY, signal)
  return { markers: markers.length, purged }
}
