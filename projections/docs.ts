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
 * for a while, so a task that runs quickly costs one write for its whole life. Writes are
 * compare-and-set on the entry's revision, so a stale writer never overwrites a newer document.
 * Memory is bounded: written documents beyond `capacity` are forgotten, ended tasks first.
 */
import { TERMINAL, evolve, fold, type StoredEvent, type TaskState } from "../src/domain/events.js"
import type { EventLog } from "../src/eventlog/EventLog.js"
import type { PipelinedKv } from "../src/eventlog/kv.js"
import { taskStateKey } from "../streams/definitions.js"

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
  /** Revision of the bucket entry (0: none). */
  revision: number
  /** First sequence not yet written (0: the bucket has it all). */
  dirtyFrom: number
  /** When it became dirty (ms). */
  dirtyAt: number
}

export interface TaskDocsOptions {
  /** Written documents kept in memory at most. Default 20,000. */
  readonly capacity?: number
  /** A task still running is written once it has been unwritten this long (ms). Default 1,000. */
  readonly writeAfterMs?: number
  /** Write the read model (false: only fold, e.g. while rebuilding another projection). */
  readonly write?: boolean
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

const keyOf = (stored: StoredEvent) => taskStateKey(stored.event.tenant, stored.event.taskId)

export class TaskDocs {
  private readonly docs = new Map<string, Doc>()
  private readonly capacity: number
  private readonly writeAfterMs: number
  private readonly write: boolean
  private writes = 0

  constructor(
    private readonly kv: PipelinedKv,
    private readonly log: EventLog,
    options: TaskDocsOptions = {}
  ) {
    this.capacity = options.capacity ?? 20_000
    this.writeAfterMs = options.writeAfterMs ?? 1_000
    this.write = options.write ?? true
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
    const expected = new Map<string, number>()
    const refold = new Set<string>()
    const load = new Map<string, StoredEvent>()
    for (const stored of events) {
      const key = keyOf(stored)
      const doc = this.docs.get(key)
      let version = expected.get(key) ?? (doc === undefined ? undefined : (doc.state?.version ?? 0))
      if (version === undefined) {
        if (stored.event.type === "TaskCreated" && stored.prevSeq === 0) version = 0
        else if (!load.has(key)) load.set(key, stored)
      }
      if (version !== undefined && stored.seq > version && stored.prevSeq !== undefined && stored.prevSeq !== version) refold.add(key)
      if (version === undefined || stored.seq > version) expected.set(key, stored.seq)
    }
    await Promise.all([...load].map(async ([key, stored]) => {
      const entry = await this.kv.get(key)
      const state = entry === null || entry.value.length === 0 ? null : (JSON.parse(decoder.decode(entry.value)) as TaskState)
      this.docs.set(key, { state, revision: entry?.revision ?? 0, dirtyFrom: 0, dirtyAt: 0 })
      const version = state?.version ?? 0
      if (stored.seq > version && stored.prevSeq !== version) refold.add(key)
    }))
    await Promise.all([...refold].map(async (key) => {
      const [tenant = "", taskId = ""] = key.split(".")
      const state = fold((await this.log.readTask(tenant, taskId)).events)
      const doc = this.docs.get(key) ?? { state: null, revision: 0, dirtyFrom: 0, dirtyAt: 0 }
      if (state !== null && state.version > (doc.state?.version ?? 0)) this.markDirty(doc, (doc.state?.version ?? 0) + 1)
      doc.state = state ?? doc.state
      this.docs.set(key, doc)
    }))
  }

  /** Applies one event, in log order, after `prepare` saw its batch. */
  apply(stored: StoredEvent): Change {
    const key = keyOf(stored)
    let doc = this.docs.get(key)
    if (doc === undefined) {
      doc = { state: null, revision: 0, dirtyFrom: 0, dirtyAt: 0 }
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
      this.markDirty(doc, stored.seq)
    }
    return { stored, before, after, replayed: false }
  }

  /**
   * Writes dirty documents: ended tasks and those unwritten for `writeAfterMs`, or all of them
   * when `all`. Then forgets written documents beyond the capacity.
   */
  async flush(all: boolean): Promise<void> {
    if (!this.write) {
      for (const doc of this.docs.values()) doc.dirtyFrom = 0
      this.evict()
      return
    }
    const now = Date.now()
    const due: Array<[string, Doc]> = []
    for (const entry of this.docs) {
      const doc = entry[1]
      if (doc.dirtyFrom === 0 || doc.state === null) continue
      if (all || TERMINAL.has(doc.state.status) || now - doc.dirtyAt >= this.writeAfterMs) due.push(entry)
    }
    await Promise.all(due.map(([key, doc]) => this.writeDoc(key, doc)))
    this.evict()
  }

  /** Every event up to this sequence is in the bucket (given `applied`, the last one applied). */
  durableThrough(applied: number): number {
    let lowest = applied + 1
    for (const doc of this.docs.values()) if (doc.dirtyFrom !== 0 && doc.dirtyFrom < lowest) lowest = doc.dirtyFrom
    return lowest - 1
  }

  private markDirty(doc: Doc, seq: number): void {
    if (doc.dirtyFrom !== 0) return
    doc.dirtyFrom = seq
    doc.dirtyAt = Date.now()
  }

  private async writeDoc(key: string, doc: Doc): Promise<void> {
    for (;;) {
      const state = doc.state
      if (state === null) return
      const result = await this.kv.put(key, encoder.encode(JSON.stringify(state)), doc.revision)
      if (result.ok) {
        this.writes++
        doc.revision = result.revision
        // Applied while the write was in flight: still dirty from the next sequence on.
        if (doc.state === state) doc.dirtyFrom = 0
        else doc.dirtyFrom = state.version + 1
        return
      }
      // Another writer got there first (a broker before a leadership change): the newer wins.
      const current = await this.kv.get(key)
      const theirs = current === null || current.value.length === 0 ? null : (JSON.parse(decoder.decode(current.value)) as TaskState)
      doc.revision = current?.revision ?? 0
      if (theirs !== null && theirs.version >= state.version) {
        if (doc.state === state) {
          doc.state = theirs
          doc.dirtyFrom = 0
        }
        return
      }
    }
  }

  private evict(): void {
    let excess = this.docs.size - this.capacity
    if (excess <= 0) return
    // Ended tasks first, then the least recently used; never a document not yet written.
    for (const pass of [true, false]) {
      for (const [key, doc] of this.docs) {
        if (excess <= 0) return
        if (doc.dirtyFrom !== 0) continue
        if (pass && (doc.state === null || !TERMINAL.has(doc.state.status))) continue
        this.docs.delete(key)
        excess--
      }
    }
  }
}
