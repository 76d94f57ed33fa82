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
 * Writes are coalesced: a task's document is written when it is over (ended, and its webhook, if
 * any, answered), when a reader asks for everything to be written (listings and queue statistics
 * do, through the runtime's `flushNow`), when more than `maxUnwritten` wait, or once it has been
 * unwritten for `writeAfterMs`. A task that runs quickly costs one write for its whole life, and so
 * does one that waits in a backlog nobody is looking at: writing every waiting task after 3 s, as
 * before, cost it a second document, an index entry and its removal. The projection is the bucket's
 * one writer (the projections lease), so a flush sends plain puts and one acknowledged barrier
 * after them (eventlog/kv.ts): one message per document. A create that may have been folded before
 * (at or below the replay horizon: the log's end when this fold started) is looked up in the bucket
 * first, so a replay never writes a task back to its first state.
 *
 * Memory: the document of a task that is over — ended, and its webhook (if any) delivered — is
 * forgotten once the bucket has it (a rare later event, a purge, reads it back from there), so
 * what stays in memory is the tasks still going, not the last 20,000 ended ones (20,000 documents
 * with 200-byte payloads were ~15–20 MB of a 60 MB heap in a snapshot mid-run), marked by every
 * full collection. Other written documents beyond `capacity`, or beyond `maxBytes` of JSON
 * together, are forgotten least recently used first. Forgetting happens only as a batch is
 * prepared, never between `prepare` and `apply`: a flush runs beside the fold.
 *
 * The open-task index (src/eventlog/openTasks.ts) is written here too: as a document is sent, its
 * task's entry is put (the task is open) or removed (it ended and had one) when it differs from
 * what the index was last sent for it, before the document; a flush whose barrier fails sends both
 * again. A document read back from the bucket counts as indexed when it is open.
 *
 * Bookkeeping costs what is written or forgotten, not what is held: under a backlog tens of
 * thousands of waiting tasks are dirty or held at once, and walking all of them ten times a second
 * (flush, durableThrough) and once per batch (forget) was ~5 % of the broker's CPU and a tenth of
 * what it allocated (profiled, 200,000 tasks). So the dirty documents are kept in order apart
 * (unwritten.ts), and the written ones are kept apart, least recently used first, for eviction.
 */
import { TERMINAL, evolve, fold, type StoredEvent, type TaskState } from "../src/domain/events.js"
import type { EventLog } from "../src/eventlog/EventLog.js"
import type { DocumentStore, IndexStore } from "../src/eventlog/kv.js"
import { openTaskEntry } from "../src/domain/openTask.js"
import { taskStateKey } from "../streams/definitions.js"
import { utf8 } from "../src/eventlog/utf8.js"
import { Unwritten, type Taken, type UnwrittenDoc } from "./unwritten.js"

/** What one event did to its task, as the sinks see it. */
export interface Change {
  readonly stored: StoredEvent
  readonly before: TaskState | null
  readonly after: TaskState | null
  /** The state was already past this event (a replay after a restart): nothing changed. */
  readonly replayed: boolean
}

interface Doc extends UnwrittenDoc {
  state: TaskState | null
  /** The task's entry in the open-task index as last written (undefined: none). */
  indexed: string | undefined
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
  /**
   * A task still going is written once it has been unwritten this long (ms). Default 30,000. Readers
   * of the read model do not wait for it: they ask the projections to write everything first
   * (`ProjectionRuntime.flushNow`). What it bounds is how far back the saved position may stay.
   */
  readonly writeAfterMs?: number
  /**
   * Unwritten documents of tasks still going kept at most: beyond it the oldest are written at the
   * next tick, whatever their age. Bounds the memory a backlog holds. Default 20,000.
   */
  readonly maxUnwritten?: number
  /**
   * The same bound in bytes, each unwritten document reckoned at its size as last written plus the
   * bodies of the events since (a payload or a result counted as the event carried it). Default 64 MiB.
   */
  readonly maxUnwrittenBytes?: number
  /** Write the read model (false: only fold, e.g. while rebuilding another projection). */
  readonly write?: boolean
  /** Events up to this sequence may have been folded into the bucket already. Default 0. */
  readonly replayHorizon?: number
  /**
   * The open-task index, written with the documents: a task whose document is written while it
   * waits or is leased gets an entry, removed when its document is written ended. A task that ends
   * before its first write never has one. Default none.
   */
  readonly index?: IndexStore
}

const decoder = new TextDecoder()
/** See `TaskDocsOptions.writeAfterMs`. */
export const WRITE_AFTER_MS = 30_000
/** See `TaskDocsOptions.maxUnwritten`. */
export const MAX_UNWRITTEN = 20_000
/** See `TaskDocsOptions.maxUnwrittenBytes`. */
export const MAX_UNWRITTEN_BYTES = 64 * 2 ** 20
/** Documents written per tick at most; the rest wait for the next one. */
const MAX_PUTS_PER_FLUSH = 2_000

/** Ended, and nothing more expected: no webhook, or it was delivered. */
const isOver = (state: TaskState | null): boolean => state !== null && TERMINAL.has(state.status) && (state.webhook === undefined || state.webhookDelivered)

const keyOf = (stored: StoredEvent) => taskStateKey(stored.event.tenant, stored.event.taskId)

export class TaskDocs {
  /** Every document in memory. */
  private readonly docs = new Map<string, Doc>()
  /**
   * Dirty documents (unwritten.ts). Those of tasks that are over are due at the next flush; an
   * ended task whose webhook is still to be answered waits like a running one, so the answer (most
   * often within milliseconds) is written with the end in one document.
   */
  private readonly unwritten = new Unwritten<Doc>()
  /** Written documents (neither dirty nor being written), least recently used first: what may be forgotten. */
  private readonly clean = new Map<string, Doc>()
  /** Written documents of tasks that are over, forgotten when the next batch is prepared. */
  private ended: Array<Doc> = []
  private readonly capacity: number
  private readonly maxBytes: number
  /** Bytes of the documents in memory (`Doc.bytes`). */
  private held = 0
  private readonly writeAfterMs: number
  private readonly maxUnwritten: number
  private readonly maxUnwrittenBytes: number
  private readonly write: boolean
  private readonly replayHorizon: number
  private readonly index: IndexStore | undefined
  private writes = 0
  /**
   * The lowest sequence sent by a flush whose barrier has not answered yet (0: none). Its
   * documents are no longer dirty but not known to be stored: not durable yet. One field: flushes
   * run one at a time (the runtime's tick, and the last one after it).
   */
  private inFlightFrom = 0

  constructor(
    private readonly kv: DocumentStore,
    private readonly log: EventLog,
    options: TaskDocsOptions = {}
  ) {
    this.capacity = options.capacity ?? 20_000
    this.maxBytes = options.maxBytes ?? 64 * 2 ** 20
    this.writeAfterMs = options.writeAfterMs ?? WRITE_AFTER_MS
    this.maxUnwritten = options.maxUnwritten ?? MAX_UNWRITTEN
    this.maxUnwrittenBytes = options.maxUnwrittenBytes ?? MAX_UNWRITTEN_BYTES
    this.write = options.write ?? true
    this.replayHorizon = options.replayHorizon ?? 0
    this.index = options.index
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
      // The index has an entry for every open document the bucket has (written together).
      const doc: Doc = { key, state, dirtyFrom: 0, dirtyAt: 0, bytes, indexed: openTaskEntry(state), pending: 0 }
      this.docs.set(key, doc)
      this.clean.set(key, doc)
      this.held += bytes
      const version = state?.version ?? 0
      if (stored.seq > version && stored.prevSeq !== version) refold.add(key)
    }))
    await Promise.all([...refold].map(async (key) => {
      const [tenant = "", taskId = ""] = key.split(".")
      const state = fold((await this.log.readTask(tenant, taskId)).events)
      const doc = this.docs.get(key) ?? this.added(key)
      if (state !== null && state.version > (doc.state?.version ?? 0)) this.markDirty(doc, (doc.state?.version ?? 0) + 1)
      doc.state = state ?? doc.state
      if (doc.dirtyFrom !== 0 && isOver(doc.state)) this.unwritten.markDue(doc)
    }))
  }

  /** Applies one event, in log order, after `prepare` saw its batch. */
  apply(stored: StoredEvent): Change {
    const key = keyOf(stored)
    const doc = this.docs.get(key) ?? this.added(key)
    // Most recently used last: eviction walks from the front.
    if (this.clean.delete(key)) this.clean.set(key, doc)
    const before = doc.state
    if (before !== null && stored.seq <= before.version) return { stored, before, after: before, replayed: true }
    const after = evolve(before, stored)
    if (after !== before) {
      doc.state = after
      this.markDirty(doc, stored.seq)
      this.unwritten.reckon(doc, stored.bodyBytes ?? 0)
      if (isOver(after)) this.unwritten.markDue(doc)
    }
    return { stored, before, after, replayed: false }
  }

  /**
   * Writes dirty documents: tasks that are over, those unwritten for `writeAfterMs`, the oldest
   * beyond `maxUnwritten` or `maxUnwrittenBytes`, or all of them when `all`. What is written is
   * forgotten at the next `prepare` (see the top).
   */
  async flush(all: boolean): Promise<void> {
    if (!this.write) {
      for (const doc of [...this.unwritten.ordered(), ...this.unwritten.late()]) {
        this.unwritten.take(doc)
        this.clean.set(doc.key, doc)
        this.endedOnce(doc)
      }
      return
    }
    const now = Date.now()
    const sent: Array<{ readonly doc: Doc; readonly taken: Taken; readonly indexed: string | undefined }> = []
    let indexWrites = 0
    // A barrier waits behind every put before it: bounded groups keep its ack quick.
    const room = () => all || sent.length < MAX_PUTS_PER_FLUSH
    const send = (doc: Doc) => {
      const state = doc.state
      if (state === null) return
      const value = utf8(JSON.stringify(state))
      const indexed = doc.indexed
      if (this.index !== undefined) {
        // WHY before the document: a connection's messages reach the server in order, so a
        // document that was stored implies its index write was received; a replay that finds the
        // document already written (and writes nothing) cannot leave the index behind it.
        const entry = openTaskEntry(state)
        if (entry !== doc.indexed) {
          if (entry === undefined) this.index.deleteUnacked(doc.key)
          else this.index.putUnacked(doc.key, utf8(entry))
          doc.indexed = entry
          indexWrites++
        }
      }
      this.kv.putUnacked(doc.key, value)
      // A dirty document is always in memory (only written ones are forgotten).
      this.held += value.length - doc.bytes
      doc.bytes = value.length
      sent.push({ doc, taken: this.unwritten.take(doc), indexed })
    }
    const old = (doc: Doc) => now - doc.dirtyAt >= this.writeAfterMs
    for (const doc of this.unwritten.due()) if (room()) send(doc)
    // Beyond `maxUnwritten` (due ones were just sent): the oldest, whatever their age.
    const crowded = () => this.unwritten.size > this.maxUnwritten || this.unwritten.bytes > this.maxUnwrittenBytes
    // Oldest first: the first one young enough ends the walk.
    for (const doc of this.unwritten.ordered()) {
      if (!room() || !(all || old(doc) || crowded())) break
      send(doc)
    }
    for (const doc of this.unwritten.late()) if (room() && (all || old(doc) || isOver(doc.state) || crowded())) send(doc)
    if (sent.length === 0) return
    let from = Number.POSITIVE_INFINITY
    for (const { taken } of sent) if (taken.dirtyFrom < from) from = taken.dirtyFrom
    this.inFlightFrom = from
    try {
      await Promise.all([this.kv.barrier(), indexWrites > 0 ? this.index?.barrier() : undefined])
      this.writes += sent.length
      for (const { doc } of sent) {
        if (doc.dirtyFrom !== 0 || this.docs.get(doc.key) !== doc) continue
        this.clean.set(doc.key, doc)
        this.endedOnce(doc)
      }
    } catch (error) {
      // Not known to be stored: dirty again from where it was (unwritten.ts, `putBack`).
      for (const { doc, taken, indexed } of sent)
        if (this.unwritten.putBack(doc, taken)) {
          // The index write is not known to be stored either: made again with the document.
          doc.indexed = indexed
          this.clean.delete(doc.key)
        }
      throw error
    } finally {
      this.inFlightFrom = 0
    }
  }

  /** Every event up to this sequence is in the bucket (given `applied`, the last one applied). */
  durableThrough(applied: number): number {
    // WHY the documents in flight: a position read while a flush waits for its barrier (the
    // metrics' lag, a caller waiting for the read model) said they were stored before they were.
    const lowest = Math.min(applied + 1, this.unwritten.lowest(), this.inFlightFrom === 0 ? Number.POSITIVE_INFINITY : this.inFlightFrom)
    return lowest - 1
  }

  /** A new document with no state yet: nothing to write, so it may be forgotten like a written one. */
  private added(key: string): Doc {
    const doc: Doc = { key, state: null, dirtyFrom: 0, dirtyAt: 0, bytes: 0, indexed: undefined, pending: 0 }
    this.docs.set(key, doc)
    this.clean.set(key, doc)
    return doc
  }

  /** `doc` changed at `seq`: unwritten, and no longer among the written ones that may be forgotten. */
  private markDirty(doc: Doc, seq: number): void {
    if (this.unwritten.mark(doc, seq)) this.clean.delete(doc.key)
  }

  /** A document just written: a task that is over is forgotten at the next `prepare`. */
  private endedOnce(doc: Doc): void {
    if (isOver(doc.state)) this.ended.push(doc)
  }

  /**
   * Forgets the written documents of tasks that are over (unless an event since made them dirty
   * again), then, beyond the capacity, the least recently used written ones; never one not yet
   * written or being written.
   */
  private forget(): void {
    if (this.ended.length > 0) {
      for (const doc of this.ended) if (doc.dirtyFrom === 0 && this.clean.get(doc.key) === doc && isOver(doc.state)) this.drop(doc)
      this.ended = []
    }
    for (const doc of this.clean.values()) {
      if (this.docs.size <= this.capacity && this.held <= this.maxBytes) return
      this.drop(doc)
    }
  }

  private drop(doc: Doc): void {
    this.docs.delete(doc.key)
    this.clean.delete(doc.key)
    this.held -= doc.bytes
  }
}
