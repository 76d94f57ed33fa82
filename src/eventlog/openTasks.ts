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
 *   (`compactOpenTasks`) copies every entry older than the stream's end forward, each under its
 *   revision (a newer write wins), then purges everything below that end in one request.
 */
import type { Connection } from "./connection.js"
import { KV_BARRIER_KEY, scanBucket, type Bucket, type IndexStore } from "./kv.js"
import { jetStreamCode, JS_WRONG_LAST_SEQUENCE } from "./errors.js"
import { lastSequence } from "./streams.js"
import { utf8 } from "./utf8.js"
import type { OpenTask } from "../domain/openTask.js"
import { openTaskEntry } from "../domain/openTask.js"
import type { TaskState } from "../domain/events.js"

/** Written once the index holds every open task; not a tenant's key (tenants start with a lowercase letter). */
export const OPEN_INDEX_READY_KEY = "_codeq.ready"

const decoder = new TextDecoder()

/** Whether the index holds every open task (its ready key is written). */
export const openIndexReady = async (index: Pick<Bucket, "get">): Promise<boolean> => {
  const entry = await index.get(OPEN_INDEX_READY_KEY)
  return entry !== null && entry.operation === "PUT"
}

/** Calls `visit` with every open task of `tenant` in the index, streamed; delete markers skipped. */
export const scanOpenTasks = (index: Pick<Bucket, "watch">, tenant: string, visit: (task: OpenTask & { readonly key: string }) => void): Promise<void> =>
  scanBucket(index, `${tenant}.*`, (entry) => {
    if (entry.operation === "PUT" && entry.value.length > 0) visit({ ...(JSON.parse(decoder.decode(entry.value)) as OpenTask), key: entry.key })
  })

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
  /** Delete markers below the stream's end when the pass began. */
  readonly markers: number
  /** Live entries written again above it. */
  readonly copied: number
  /** Messages the purge removed. */
  readonly purged: number
}

/** Entries copied forward at once. */
const COPY_CONCURRENCY = 64

/**
 * One compaction pass over the index (see the top). Does nothing while there are fewer delete
 * markers than `minMarkers` or than live entries to copy (a pass costs what it copies). Any broker
 * may run it at any time: a write to a key after the pass began has a sequence above the purge.
 *
 * WHY the copy is under the entry's revision: the projection may rewrite or remove the key between
 * the scan and the copy. Its write is newer and must win — a copy of the older entry over it would
 * bring back a task that is no longer open. An update under the old revision fails then, and the
 * older entry goes with the purge, leaving the projection's write.
 */
export const compactOpenTasks = async (conn: Connection, index: Pick<Bucket, "watch" | "update">, indexBucket: string, minMarkers = 1): Promise<CompactionResult> => {
  const stream = `KV_${indexBucket}`
  const end = await lastSequence(conn, stream)
  const live = new Map<string, { readonly value: Uint8Array; readonly revision: number }>()
  let markers = 0
  await scanBucket(index, ">", (entry) => {
    if (entry.revision > end) {
      // Written since the pass began: above the purge, and newer than anything to copy.
      live.delete(entry.key)
      return
    }
    if (entry.operation === "PUT") {
      if (entry.key !== KV_BARRIER_KEY) live.set(entry.key, { value: entry.value, revision: entry.revision })
    } else {
      live.delete(entry.key)
      markers++
    }
  })
  if (markers < Math.max(1, minMarkers) || markers < live.size) return { markers, copied: 0, purged: 0 }
  let copied = 0
  const entries = [...live]
  for (let i = 0; i < entries.length; i += COPY_CONCURRENCY) {
    const results = await Promise.all(
      entries.slice(i, i + COPY_CONCURRENCY).map(([key, { value, revision }]) =>
        index.update(key, value, revision).then(
          () => true,
          (error: unknown) => {
            // A newer write won: it stays above the purge. Anything else stops the pass before it purges.
            if (jetStreamCode(error) === JS_WRONG_LAST_SEQUENCE) return false
            throw error
          }
        )
      )
    )
    copied += results.filter(Boolean).length
  }
  const jsm = await conn.jetstreamManager({ checkAPI: false })
  const { purged } = await jsm.streams.purge(stream, { seq: end + 1 })
  return { markers, copied, purged }
}
