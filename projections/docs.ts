/**
 * Every task's current state, folded from the log in order (DESIGN §4 `task-state`): the fold the
 * other projections read (command, webhook, status of the task an event belongs to), and the
 * read model written to the task-state key-value bucket for listings.
 *
 * The projection reads the log in order, so a task's next event normally finds the task's state in
 * memory at the event's predecessor (`Codeq-Prev-Seq`) and evolves it without any I/O. A task that
 * is not in memory is read from the bucket; an event whose predecessor is not the state's version
 * (a gap: an event quarantined, a bucket behind) makes the task refold from the log. An event at or
 * below the state's version (a replay after a restart) changes nothing.
 *
 * Writes are coalesced: a task's document is written when it ends, or once it has been unwritten
 * for a while, so a task that runs quickly costs one write for its whole life. The projection is
 * the bucket's one writer (the projections lease), so a flush sends plain puts and one
 * acknowledged barrier after them (eventlog/kv.ts): one message per document. A create that may
 * have been folded before (at or below the replay horizon: the log's end when this fold started)
 * is looked up in the bucket first, so a replay never writes a task back to its first state.
 *
 * Memory: the document of a task that is over — ended, and its webhook (if any) delivered — is
 * forgotten once the bucket has it (a rare later event, a purge, reads it back from there), so
 * what stays in memory is the tasks still going, not the last 20,000 ended ones (20,000 documents
 * with 200-byte payloads were ~15–20 MB of a 60 MB heap in a snapshot mid-run), marked by every
 * full collection. Other written documents beyond `capacity`, or beyond `maxBytes` of JSON
 * together, are forgotten least recently used first. Forgetting happens only as a batch is
 * prepared, never between `prepare` and `apply`: a flush runs beside the fold.
 */
import { TERMINAL, evolve, fold, type StoredEvent, type TaskState } from "../src/domain/events.js"
import type { EventLog } from "../src/eventlog/EventLog.js"
import type { DocumentStore } from "../src/eventlog/kv.js"
import { taskStateKey } from "../streams/definitions.js"
import { utf8 } from "../src/eventlog/utf8.js"

/** What one event did to its task, as the sinks see it. */
export interface Change {
  readonly stored: StoredEvent
  readonly before: TaskState | null
  readonly after: TaskState | null
  /** The state was already past this event (a replay after a restart): nothing changed. */
  readonly replayed: boolean
}

interface Doc {
  state: TaskState | null
  /** First sequence not yet written (0: the bucket has it all). */
  dirtyFrom: number
  /** When it became dirty (ms). */
  dirtyAt: number
  /** Bytes of its JSON as last written or read from the bucket (0: not yet). */
  bytes: number
}

export interface TaskDocsOptions {
  /** Written documents kept in memory at most (those of tasks that are over are not kept). Default 20,000. */
  readonly capacity?: number
  /**
   * Bytes of written documents' JSON kept in memory at most. Default 64 MiB. A document carries
   * its task's payload and result (up to 256 KiB each): counted alone, 20,000 of them could hold
   * gigabytes.
   */
  readonly maxBytes?: number
  /** A task still running is written once it has been unwritten this long (ms). Default 3,000. */
  readonly writeAfterMs?: number
  /** Write the read model (false: only fold, e.g. while rebuilding another projection). */
  readonly write?: boolean
  /** Events up to this sequence may have been folded into the bucket already. Default 0. */
  readonly replayHorizon?: number
}

const decoder = new TextDecoder()
/** Documents written per tick at most; the rest wait for the next one. */
const MAX_PUTS_PER_FLUSH = 2_000

/** Ended, and nothing more expected: no webhook, or it was delivered. */
const isOver = (state: TaskState | null): boolean => state !== null && TERMINAL.has(state.status) && (state.webhook === undefined || state.webhookDelivered)

const keyOf = (stored: StoredEvent) => taskStateKey(stored.event.tenant, stored.event.taskId)

export class TaskDocs {
  private readonly docs = new Map<string, Doc>()
  /**
   * The documents not yet written (dirtyFrom ≠ 0), in the order they became so: what a flush and
   * `durableThrough` look at, instead of every document in memory (20,000 by default, ten times a
   * second — ~10 % of the broker's CPU under load, profiled).
   */
  private readonly dirty = new Map<string, Doc>()
  /** Written documents of tasks that are over, forgotten when the next batch is prepared. */
  private ended: Array<{ readonly key: string; readonly doc: Doc }> = []
  private readonly capacity: number
  private readonly maxBytes: number
  /** Bytes of the documents in memory (`Doc.bytes`). */
  private held = 0
  private readonly writeAfterMs: number
  private readonly write: boolean
  private readonly replayHorizon: number
  private writes = 0

  constructor(
    private readonly kv: DocumentStore,
    private readonly log: EventLog,
    options: TaskDocsOptions = {}
  ) {
    this.capacity = options.capacity ?? 20_000
    this.maxBytes = options.maxBytes ?? 64 * 2 ** 20
    this.writeAfterMs = options.writeAfterMs ?? 3_000
    this.write = options.write ?? true
    this.replayHorizon = options.replayHorizon ?? 0
  }

  /** Documents written to the bucket so far. */
  get written(): number {
    return this.writes
  }

  /** The task's state as folded so far, if it is in memory. */
  stateOf(tenant: string, taskId: string): TaskState | null | undefined {
    return this.docs.get(taskStateKey(tenant, taskId))?.state
  }

  /**
   * Brings into memory what the events of one batch need: the bucket's document of every task not
   * in memory, and a refold from the log for a task whose event does not follow its state.
   */
  async prepare(events: ReadonlyArray<StoredEvent>): Promise<void> {
    this.forget()
    const expected = new Map<string, number>()
    const refold = new Set<string>()
    const load = new Map<string, StoredEvent>()
    for (const stored of events) {
      const key = keyOf(stored)
      const doc = this.docs.get(key)
      let version = expected.get(key) ?? (doc === undefined ? undefined : (doc.state?.version ?? 0))
      if (version === undefined) {
        if (stored.event.type === "TaskCreated" && stored.prevSeq === 0 && stored.seq > this.replayHorizon) version = 0
        else if (!load.has(key)) load.set(key, stored)
      }
      if (version !== undefined && stored.seq > version && stored.prevSeq !== undefined && stored.prevSeq !== version) refold.add(key)
      if (version === undefined || stored.seq > version) expected.set(key, stored.seq)
    }
    await Promise.all([...load].map(async ([key, stored]) => {
      const entry = await this.kv.get(key)
      const state = entry === null || entry.value.length === 0 ? null : (JSON.parse(decoder.decode(entry.value)) as TaskState)
      const bytes = entry?.value.length ?? 0
      this.docs.set(key, { state, dirtyFrom: 0, dirtyAt: 0, bytes })
      this.held += bytes
      const version = state?.version ?? 0
      if (stored.seq > version && stored.prevSeq !== version) refold.add(key)
    }))
    await Promise.all([...refold].map(async (key) => {
      const [tenant = "", taskId = ""] = key.split(".")
      const state = fold((await this.log.readTask(tenant, taskId)).events)
      const doc = this.docs.get(key) ?? { state: null, dirtyFrom: 0, dirtyAt: 0, bytes: 0 }
      if (state !== null && state.version > (doc.state?.version ?? 0)) this.markDirty(key, doc, (doc.state?.version ?? 0) + 1)
      doc.state = state ?? doc.state
      this.docs.set(key, doc)
    }))
  }

  /** Applies one event, in log order, after `prepare` saw its batch. */
  apply(stored: StoredEvent): Change {
    const key = keyOf(stored)
    let doc = this.docs.get(key)
    if (doc === undefined) {
      doc = { state: null, dirtyFrom: 0, dirtyAt: 0, bytes: 0 }
      this.docs.set(key, doc)
    } else {
      // Most recently used last: eviction walks from the front.
      this.docs.delete(key)
      this.docs.set(key, doc)
    }
    const before = doc.state
    if (before !== null && stored.seq <= before.version) return { stored, before, after: before, replayed: true }
    const after = evolve(before, stored)
    if (after !== before) {
      doc.state = after
      this.markDirty(key, doc, stored.seq)
    }
    return { stored, before, after, replayed: false }
  }

  /**
   * Writes dirty documents: ended tasks and those unwritten for `writeAfterMs`, or all of them
   * when `all`. What is written is forgotten at the next `prepare` (see the top).
   */
  async flush(all: boolean): Promise<void> {
    if (!this.write) {
      for (const [key, doc] of this.dirty) {
        doc.dirtyFrom = 0
        this.endedOnce(key, doc)
      }
      this.dirty.clear()
      return
    }
    const now = Date.now()
    const sent: Array<{ readonly key: string; readonly doc: Doc; readonly dirtyFrom: number }> = []
    for (const [key, doc] of this.dirty) {
      // A barrier waits behind every put before it: bounded groups keep its ack quick.
      if (!all && sent.length >= MAX_PUTS_PER_FLUSH) break
      const state = doc.state
      if (state === null) continue
      if (!all && !TERMINAL.has(state.status) && now - doc.dirtyAt < this.writeAfterMs) continue
      const value = utf8(JSON.stringify(state))
      this.kv.putUnacked(key, value)
      // A dirty document is always in memory (only written ones are forgotten).
      this.held += value.length - doc.bytes
      doc.bytes = value.length
      sent.push({ key, doc, dirtyFrom: doc.dirtyFrom })
      doc.dirtyFrom = 0
      this.dirty.delete(key)
    }
    if (sent.length > 0) {
      try {
        await this.kv.barrier()
        this.writes += sent.length
        for (const { key, doc } of sent) this.endedOnce(key, doc)
      } catch (error) {
        // Not known to be stored: dirty again (unless a newer change already made it so).
        for (const { key, doc, dirtyFrom } of sent)
          if (doc.dirtyFrom === 0 || doc.dirtyFrom > dirtyFrom) {
            doc.dirtyFrom = dirtyFrom
            this.dirty.set(key, doc)
          }
        throw error
      }
    }
  }

  /** Every event up to this sequence is in the bucket (given `applied`, the last one applied). */
  durableThrough(applied: number): number {
    let lowest = applied + 1
    for (const doc of this.dirty.values()) if (doc.dirtyFrom < lowest) lowest = doc.dirtyFrom
    return lowest - 1
  }

  private markDirty(key: string, doc: Doc, seq: number): void {
    if (doc.dirtyFrom !== 0) return
    doc.dirtyFrom = seq
    doc.dirtyAt = Date.now()
    this.dirty.set(key, doc)
  }

  /** A document just written: a task that is over is forgotten at the next `prepare`. */
  private endedOnce(key: string, doc: Doc): void {
    if (isOver(doc.state)) this.ended.push({ key, doc })
  }

  /**
   * Forgets the written documents of tasks that are over (unless an event since made them dirty
   * again), then, beyond the capacity, the least recently used written ones; never one not yet
   * written.
   */
  private forget(): void {
    if (this.ended.length > 0) {
      for (const { key, doc } of this.ended) if (doc.dirtyFrom === 0 && this.docs.get(key) === doc && isOver(doc.state)) this.drop(key, doc)
      this.ended = []
    }
    for (const [key, doc] of this.docs) {
      if (this.docs.size <= this.capacity && this.held <= this.maxBytes) return
      if (doc.dirtyFrom === 0) this.drop(key, doc)
    }
  }

  private drop(key: string, doc: Doc): void {
    this.docs.delete(key)
    this.held -= doc.bytes
  }
}
