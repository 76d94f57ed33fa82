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
import { publishSoon } from "./outbox.js"
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
  /** The keys matching `filter` (NATS wildcards), every key without one. */
  keys(filter?: string): Promise<AsyncIterable<string>>
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

/** Opens (creating when missing) the bucket `name` with `replicas` (default 1). */
export const openBucket = (conn: Connection, name: string, replicas?: number): Promise<Bucket> =>
  conn.jetstream().views.kv(name, replicas === undefined ? {} : { replicas })

/** Deletes the bucket `name` with everything in it; nothing when it does not exist. */
export const deleteBucket = async (conn: Connection, name: string): Promise<void> => {
  const jsm = await conn.jetstreamManager()
  await jsm.streams.delete(`KV_${name}`).catch((error: unknown) => {
    if (!isStreamNotFound(error)) throw error
  })
}

export class PipelinedKv implements DocumentStore {
  private readonly stream: string

  constructor(
    private readonly publisher: PipelinedPublisher,
    private readonly bucket: string
  ) {
    this.stream = `KV_${bucket}`
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
    publishSoon(this.publisher.mux.connection, `$KV.${this.bucket}.${key}`, value)
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
