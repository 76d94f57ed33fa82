/**
 * A JetStream key-value bucket read and written through the request mux: gets are direct gets of
 * the key's last message, writes are pipelined publishes with the expected revision (0 creates),
 * so a read model can keep thousands of updates in flight with compare-and-set semantics. A
 * single writer that needs no answer per key can instead send plain puts and one acknowledged
 * barrier after them: the stream stores a connection's publishes in order, so the barrier's ack
 * says every put before it was handled — one message per key instead of two. The bucket itself is
 * the one nats.js creates (`KV_<bucket>`, subjects `$KV.<bucket>.>`, direct gets allowed), so
 * nats.js readers see the same data.
 */
import type { Connection } from "./connection.js"
import { publishSoon, type OnUnsent } from "./outbox.js"
import { purgeSubjectBelow } from "./streams.js"
import { headerBlockOf, headerIn, statusCodeOf, statusTextOf } from "./rawHeaders.js"
import { WireHeaders } from "./wireHeaders.js"
import { ConcurrencyConflict, isStreamNotFound } from "./errors.js"
import type { PipelinedPublisher } from "./pipeline.js"
import { utf8 } from "./utf8.js"

/** The key the barrier writes; not a tenant's key (tenants start with a lowercase letter). */
export const KV_BARRIER_KEY = "_codeq.barrier"

export interface KvEntry {
  readonly value: Uint8Array
  readonly revision: number
}

/**
 * A key-value bucket as the read models use it: the subset of nats.js's bucket they call, so they
 * depend on this port and not on the client.
 */
export interface Bucket {
  /** The entry (a deleted key comes back with operation `DEL` or `PURGE`), or null when never written. */
  get(key: string): Promise<(KvEntry & { readonly operation: string }) | null>
  put(key: string, value: Uint8Array): Promise<number>
  /** Writes only if the key does not exist; rejects otherwise. */
  create(key: string, value: Uint8Array): Promise<number>
  /** Writes only if the key is at `revision`; rejects otherwise. */
  update(key: string, value: Uint8Array, revision: number): Promise<number>
  delete(key: string, options?: { readonly previousSeq?: number }): Promise<void>
  /**
   * The last entry of every key matching `key` (NATS wildcards), deleted ones included, then every
   * later write; `initializedFn` is called once the entries that existed at the start are
   * delivered. Read through `scanBucket` or `liveEntries`.
   */
  watch(options: { readonly key: string; readonly headers_only?: boolean; readonly initializedFn?: () => void }): Promise<BucketWatch>
}

/** An entry as a watch delivers it: `operation` is `PUT`, `DEL` or `PURGE`; `revision` is its stream sequence. */
export interface WatchedEntry {
  readonly key: string
  readonly value: Uint8Array
  readonly operation: string
  readonly revision: number
  readonly created: Date
}

export interface BucketWatch extends AsyncIterable<WatchedEntry> {
  stop(): void
}

/** How long a scan waits for the watch's next entry before it gives up (checked every this often). */
export const SCAN_IDLE_MS = 10_000

/** A scan that has received nothing for this long asks the watch's consumer what it has delivered. */
const SCAN_QUIET_MS = 250

/**
 * What the watch's consumer says it has delivered and still has to deliver, when the watch is
 * nats.js's (its subscription, kept as `_data`); undefined otherwise or when the server does not
 * answer.
 */
const consumerProgress = async (watch: BucketWatch): Promise<{ readonly delivered: number; readonly pending: number } | undefined> => {
  const sub = (watch as { _data?: { consumerInfo?: () => Promise<{ readonly num_pending: number; readonly delivered: { readonly consumer_seq: number } }> } })._data
  if (typeof sub?.consumerInfo !== "function") return undefined
  const info = await sub.consumerInfo().catch(() => undefined)
  return info === undefined ? undefined : { delivered: info.delivered.consumer_seq, pending: info.num_pending }
}

/**
 * Calls `visit` with the last entry of every key matching `filter`, deleted ones included, and
 * ends once the entries that existed when it started are delivered; an entry written meanwhile
 * may be visited too, after the one it replaces. Nothing is held but the entry being visited.
 * Rejects when the watch delivers nothing for `idleMs` (up to twice that) before then.
 *
 * WHY a quiet scan asks the consumer: nats.js's watch ends the initial listing when it has
 * received as many entries as were pending when it began, or an entry after which nothing is
 * pending. A message purged in between (a compaction of delete markers beside the scan) is never
 * delivered, so neither may ever come. A scan that has received nothing for SCAN_QUIET_MS, whose
 * consumer has nothing pending and has delivered exactly as many messages as the scan visited, has
 * everything: comparing counts, not "nothing pending" alone, keeps a scan from ending while
 * delivered messages are still on their way to it (a rebuild's scan of 10,000 documents once
 * ended at 9,748 that way).
 *
 * Not nats.js's `keys()`: that listing ends only with a message after which nothing is pending,
 * so while keys under the filter are written it can go on as long as the writes do (on
 * nats-server 2.9, with one writer putting keys and deleting them: one listing in four took 4-5 s,
 * the slowest 18 s). The watch counts what it was told was there and ends when that has come.
 */
export const scanBucket = async (bucket: Pick<Bucket, "watch">, filter: string, visit: (entry: WatchedEntry) => void, options: { readonly headersOnly?: boolean; readonly idleMs?: number } = {}): Promise<void> => {
  const scan: { initialized: boolean; stalled: boolean; stop?: () => void } = { initialized: false, stalled: false }
  // Called once every entry that existed when the watch started has been queued: ends the scan.
  // It may run inside `watch()` already (nothing there, or all of it queued before it returned).
  const done = () => {
    scan.initialized = true
    scan.stop?.()
  }
  // Deletes come too, and the caller skips them: the watch counts them, and a last entry left out
  // would never end the scan.
  const watch = await bucket.watch({ key: filter, headers_only: options.headersOnly ?? false, initializedFn: done })
  scan.stop = () => watch.stop()
  // A stopped iterator still yields what was queued before the stop.
  if (scan.initialized) watch.stop()
  // One timer for the whole scan, not one per entry: it stops the watch when no entry came since
  // its last tick.
  const idleMs = options.idleMs ?? SCAN_IDLE_MS
  let visited = 0
  let visitedAtTick = 0
  const idle = setInterval(() => {
    if (visited === visitedAtTick) {
      scan.stalled = true
      watch.stop()
    }
    visitedAtTick = visited
  }, idleMs)
  let visitedAtQuiet = -1
  const quiet = setInterval(() => {
    if (visited !== visitedAtQuiet) {
      visitedAtQuiet = visited
      return
    }
    void consumerProgress(watch).then((progress) => {
      if (progress !== undefined && progress.pending === 0 && progress.delivered === visited && visited === visitedAtQuiet) done()
    })
  }, SCAN_QUIET_MS)
  try {
    for await (const entry of watch) {
      visited++
      visit(entry)
    }
  } finally {
    clearInterval(idle)
    clearInterval(quiet)
  }
  if (scan.stalled && !scan.initialized) throw new Error(`listing ${filter}: the watch delivered nothing for ${idleMs} ms`)
}

/**
 * The live entries matching `filter` by key (deleted keys left out), as `scanBucket` reads them;
 * a key written while it runs may or may not be there. `headersOnly`: without their values.
 */
export const liveEntries = async (bucket: Pick<Bucket, "watch">, filter: string, options: { readonly headersOnly?: boolean } = {}): Promise<Map<string, WatchedEntry>> => {
  const live = new Map<string, WatchedEntry>()
  await scanBucket(bucket, filter, (entry) => (entry.operation === "PUT" ? live.set(entry.key, entry) : live.delete(entry.key)), options)
  return live
}

/**
 * A read model's documents as their one writer uses them: reads, puts that are not answered one by
 * one, and a barrier that resolves once every put before it is stored (PipelinedKv on JetStream).
 */
export interface DocumentStore {
  get(key: string): Promise<KvEntry | null>
  putUnacked(key: string, value: Uint8Array): void
  barrier(): Promise<void>
}

/** A document store whose writer also removes keys, unanswered like its puts (an index). */
export interface IndexStore extends DocumentStore {
  /** A delete with no answer: the key's delete marker, covered by the next `barrier`. */
  deleteUnacked(key: string): void
}

/** Opens (creating when missing) the bucket `name` with `replicas` (default 1). */
export const openBucket = (conn: Connection, name: string, replicas?: number): Promise<Bucket> =>
  conn.jetstream().views.kv(name, replicas === undefined ? {} : { replicas })

/** The bucket `name` without creating it: reads of a bucket that does not exist reject. */
export const bindBucket = (conn: Connection, name: string): Promise<Bucket> => conn.jetstream().views.kv(name, { bindOnly: true })

/** Deletes the bucket `name` with everything in it; nothing when it does not exist. */
export const deleteBucket = async (conn: Connection, name: string): Promise<void> => {
  const jsm = await conn.jetstreamManager()
  await jsm.streams.delete(`KV_${name}`).catch((error: unknown) => {
    if (!isStreamNotFound(error)) throw error
  })
}

const DELETE_HEADERS = (() => {
  const h = new WireHeaders()
  h.set("KV-Operation", "DEL")
  return h
})()

export class PipelinedKv implements IndexStore {
  private readonly stream: string
  private deletes = 0
  /** One callback for every put (none made per put: this is the read model's write path). */
  private readonly unsent: OnUnsent | undefined

  constructor(
    private readonly publisher: PipelinedPublisher,
    private readonly bucket: string,
    /**
     * Told of a put that could not be sent (over the server's max_payload; a closed connection
     * fails the next barrier instead). The barrier after it does not see it: without this, the
     * document was missing from the bucket without a word.
     */
    onUnsent?: (key: string, bytes: number, cause: unknown) => void
  ) {
    this.stream = `KV_${bucket}`
    const prefix = `$KV.${bucket}.`.length
    this.unsent = onUnsent === undefined ? undefined : (cause, subject, data) => onUnsent(subject.slice(prefix), data.length, cause)
  }

  /** The key's current value, or null when absent or deleted. Rejects when the bucket cannot be read. */
  async get(key: string): Promise<KvEntry | null> {
    const reply = await this.publisher.mux.request(`$JS.API.DIRECT.GET.${this.stream}`, utf8(JSON.stringify({ last_by_subj: `$KV.${this.bucket}.${key}` })))
    if (!reply.ok) throw new Error(`reading ${this.bucket}/${key}: ${reply.reason}`)
    const block = headerBlockOf(reply.msg)
    const code = statusCodeOf(block)
    if (code === 404) return null
    if (block === undefined || code >= 300) throw new Error(`reading ${this.bucket}/${key}: ${block === undefined ? "no headers" : statusTextOf(block)}`)
    const operation = headerIn(block, "KV-Operation")
    if (operation === "DEL" || operation === "PURGE") return null
    return { value: reply.msg.data, revision: Number(headerIn(block, "Nats-Sequence")) }
  }

  /** A plain put with no answer (see the module comment); follow a group of them with `barrier`. */
  putUnacked(key: string, value: Uint8Array): void {
    publishSoon(this.publisher.mux.connection, `$KV.${this.bucket}.${key}`, value, undefined, this.unsent)
  }

  /** A delete with no answer (a `DEL` marker, as nats.js writes one); follow with `barrier`. */
  deleteUnacked(key: string): void {
    this.deletes++
    publishSoon(this.publisher.mux.connection, `$KV.${this.bucket}.${key}`, new Uint8Array(), { headers: DELETE_HEADERS })
  }

  /** Deletes sent with `deleteUnacked` so far. */
  get deletesSent(): number {
    return this.deletes
  }

  /** Resolves once every put sent before it on this connection was handled; rejects otherwise. */
  async barrier(): Promise<void> {
    const result = await this.publisher.publish(`$KV.${this.bucket}.${KV_BARRIER_KEY}`, new Uint8Array(), new WireHeaders())
    if (!result.ok) throw result.error
  }

  /**
   * Writes if the key is still at `revision` (0: absent): the new revision, or not ok when another
   * writer won. Rejects when the bucket cannot be written.
   */
  async put(key: string, value: Uint8Array, revision: number): Promise<{ readonly ok: true; readonly revision: number } | { readonly ok: false }> {
    const h = new WireHeaders()
    h.set("Nats-Expected-Last-Subject-Sequence", String(revision))
    const result = await this.publisher.publish(`$KV.${this.bucket}.${key}`, value, h, revision)
    if (result.ok) return { ok: true, revision: result.seq }
    if (result.error instanceof ConcurrencyConflict) return { ok: false }
    throw result.error
  }
}

/** A delete marker a scan found: the key and the stream sequence of the marker. */
export interface DeleteMarker {
  readonly key: string
  readonly revision: number
}

/** The delete markers of a bucket written at least `olderThanMs` ago, at most `max` of them. */
export const findDeleteMarkers = async (bucket: Pick<Bucket, "watch">, olderThanMs: number, max: number, now = Date.now()): Promise<Array<DeleteMarker>> => {
  const markers: Array<DeleteMarker> = []
  await scanBucket(
    bucket,
    ">",
    (entry) => {
      if (entry.operation !== "PUT" && markers.length < max && now - entry.created.getTime() >= olderThanMs) markers.push({ key: entry.key, revision: entry.revision })
    },
    { headersOnly: true }
  )
  return markers
}

/**
 * Removes delete markers from the bucket's stream (`KV_<bucket>`), `concurrency` purges at once;
 * resolves with how many messages went. Each purge takes only the key's messages below the
 * marker's own sequence plus one: a value written to the key after the marker stays, whoever
 * purges and whenever, so any broker may run it — and stopping part way (`signal` aborted: no
 * purge starts after) leaves nothing a later pass cannot finish.
 */
export const purgeDeleteMarkers = async (conn: Connection, bucket: string, markers: ReadonlyArray<DeleteMarker>, concurrency = 16, signal?: AbortSignal): Promise<number> => {
  const jsm = await conn.jetstreamManager({ checkAPI: false })
  let purged = 0
  for (let i = 0; i < markers.length && signal?.aborted !== true; i += concurrency) {
    const results = await Promise.all(
      markers.slice(i, i + concurrency).map((marker) => purgeSubjectBelow(jsm, `KV_${bucket}`, `$KV.${bucket}.${marker.key}`, marker.revision + 1))
    )
    for (const count of results) purged += count
  }
  return purged
}
