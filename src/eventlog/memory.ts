/**
 * The EventLog in memory, held to the JetStream adapter's contract (test/support/eventLogContract.ts
 * runs against both): one sequence across every subject, starting at 1 and never reused; an append
 * stored only when its subject's last sequence is the expected one, else a ConcurrencyConflict
 * naming the actual one; events kept as the bytes and headers JetStream would keep and read back
 * through the same codec, so trace headers, `prevSeq` and undecodable messages come back alike.
 * For unit tests and anything else that needs the log without a server; nothing outlives the
 * process.
 */
import { DEFAULT_NAMING, eventSubject, type Naming } from "../../streams/definitions.js"
import type { StoredEvent } from "../domain/events.js"
import { HEADERS } from "../tracing/conventions.js"
import { writeTraceHeaders } from "../tracing/codec.js"
import { decodeEvent, encodeEvent, type RawEvent } from "./codec.js"
import { ConcurrencyConflict, LogError } from "./errors.js"
import type { AppendRequest, AppendResult, EventLog, TaskHistory } from "./EventLog.js"
import type { Bucket, BucketWatch, IndexStore, KvEntry } from "./kv.js"

interface StoredMessage {
  readonly seq: number
  readonly subject: string
  readonly time: Date
  readonly data: Uint8Array
  readonly headers: ReadonlyMap<string, string>
}

const rawOf = (msg: StoredMessage): RawEvent => ({
  seq: msg.seq,
  subject: msg.subject,
  time: msg.time,
  data: msg.data,
  header: (key) => msg.headers.get(key)
})

/**
 * Whether JetStream would take `subject` as one literal subject. An empty token is no subject at
 * all, and a `*` or `>` token is read there as a wildcard (an append on it is checked against,
 * and a read returns, other tasks' events): refused here rather than imitated.
 */
const isLiteralSubject = (subject: string): boolean =>
  subject.split(".").every((token) => token !== "" && token !== "*" && token !== ">" && !/\s/.test(token))


export class InMemoryEventLog implements EventLog {
  private readonly bySubject = new Map<string, Array<StoredMessage>>()
  private readonly prefix: string
  private lastSeq = 0
  private closed = false

  constructor(readonly naming: Naming = DEFAULT_NAMING) {
    this.prefix = `${naming.subjectRoot}.evt.`
  }

  /** Never rejects: the check and the store happen in one turn, so racing appends are serialised. */
  async append(request: AppendRequest): Promise<AppendResult> {
    const subject = eventSubject(this.naming, request.tenant, request.taskId)
    if (this.closed) return { ok: false, error: new LogError({ reason: "closed", detail: "the connection is closed" }) }
    if (!isLiteralSubject(subject)) return { ok: false, error: new LogError({ reason: "rejected", detail: `not a literal subject: ${subject}` }) }
    let data: Uint8Array
    try {
      data = encodeEvent(request.event)
    } catch (cause) {
      return { ok: false, error: new LogError({ reason: "rejected", detail: `the event does not encode: ${String(cause)}`, cause }) }
    }
    const actual = this.bySubject.get(subject)?.at(-1)?.seq ?? 0
    if (actual !== request.expectedSeq)
      return { ok: false, error: new ConcurrencyConflict({ subject, expectedSeq: request.expectedSeq, actualSeq: actual }) }
    const headers = new Map<string, string>([[HEADERS.event, request.event.type]])
    writeTraceHeaders(request.trace, (key, value) => headers.set(key, value))
    headers.set(HEADERS.prevSeq, String(request.expectedSeq))
    return { ok: true, seq: this.store(subject, data, headers), duplicate: false }
  }

  async readTask(tenant: string, taskId: string, fromSeq = 0): Promise<TaskHistory> {
    const subject = eventSubject(this.naming, tenant, taskId)
    if (this.closed) throw new LogError({ reason: "read_failed", detail: `reading ${subject}: closed` })
    // JetStream's direct get takes the start in JSON: a non-finite one goes as null (from the
    // start); a negative or fractional one is a malformed request.
    const from = Number.isFinite(fromSeq) ? fromSeq : 0
    if (from < 0 || !Number.isInteger(from)) throw new LogError({ reason: "read_failed", detail: `reading ${subject}: malformed request (from sequence ${fromSeq})` })
    if (!isLiteralSubject(subject)) throw new LogError({ reason: "read_failed", detail: `reading ${subject}: not a literal subject` })
    const events: Array<StoredEvent> = []
    const undecodable: Array<{ seq: number; reason: string }> = []
    let version = 0
    for (const msg of this.bySubject.get(subject) ?? []) {
      if (msg.seq < from) continue
      version = msg.seq
      const decoded = decodeEvent(rawOf(msg))
      if (decoded.ok) events.push(decoded.stored)
      else undecodable.push({ seq: decoded.seq, reason: decoded.reason })
    }
    return { events, version, undecodable }
  }

  /**
   * Stores bytes on a subject as a publisher outside the port would: no expected-sequence check,
   * the headers as given (none by default). A subject outside the event log has nobody to answer,
   * as on JetStream. For tests of foreign or damaged messages.
   */
  publishRaw(subject: string, data: Uint8Array, headers: Readonly<Record<string, string>> = {}): AppendResult {
    if (this.closed) return { ok: false, error: new LogError({ reason: "closed", detail: "the connection is closed" }) }
    if (!subject.startsWith(this.prefix) || !isLiteralSubject(subject))
      return { ok: false, error: new LogError({ reason: "unavailable", detail: `no event log takes ${subject}` }) }
    return { ok: true, seq: this.store(subject, data.slice(), new Map(Object.entries(headers))), duplicate: false }
  }

  /** Every decodable event of the log from `fromSeq` on, in sequence order: what a projection's feed reads. */
  events(fromSeq = 1): ReadonlyArray<StoredEvent> {
    const all = [...this.bySubject.values()].flat().filter((msg) => msg.seq >= fromSeq)
    all.sort((a, b) => a.seq - b.seq)
    return all.flatMap((msg) => {
      const decoded = decodeEvent(rawOf(msg))
      return decoded.ok ? [decoded.stored] : []
    })
  }

  /** Later appends resolve to LogError `closed` and reads reject with `read_failed`, as on JetStream. */
  close(): void {
    this.closed = true
  }

  private store(subject: string, data: Uint8Array, headers: ReadonlyMap<string, string>): number {
    const msg: StoredMessage = { seq: ++this.lastSeq, subject, time: new Date(), data, headers }
    const messages = this.bySubject.get(subject)
    if (messages === undefined) this.bySubject.set(subject, [msg])
    else messages.push(msg)
    return msg.seq
  }
}

/** A subject pattern's tokens (`*` one token, `>` the rest) matched against a key. */
const matchesFilter = (filter: string, key: string): boolean => {
  const want = filter.split(".")
  const have = key.split(".")
  for (let i = 0; i < want.length; i++) {
    if (want[i] === ">") return have.length > i
    if (want[i] !== "*" && want[i] !== have[i]) return false
  }
  return want.length === have.length
}

/**
 * A key-value bucket in memory, as a read model's port sees it (Bucket, and DocumentStore for the
 * task-state fold): revisions from one counter, compare-and-set on them, deletes kept as `DEL`
 * entries, a watch of what is there now. For unit tests of projections and their sinks.
 */
export class InMemoryBucket implements Bucket, IndexStore {
  private readonly entries = new Map<string, KvEntry & { readonly operation: string; readonly created: Date }>()
  private revision = 0

  async get(key: string): Promise<(KvEntry & { readonly operation: string }) | null> {
    return this.entries.get(key) ?? null
  }

  /** The live entries' values by key (deleted ones left out). */
  values(): ReadonlyMap<string, Uint8Array> {
    return new Map([...this.entries].filter(([, e]) => e.operation === "PUT").map(([k, e]) => [k, e.value]))
  }

  async put(key: string, value: Uint8Array): Promise<number> {
    return this.set(key, value, "PUT")
  }

  async create(key: string, value: Uint8Array): Promise<number> {
    const current = this.entries.get(key)
    if (current !== undefined && current.operation === "PUT") throw new Error(`wrong last sequence: ${key} exists`)
    return this.set(key, value, "PUT")
  }

  async update(key: string, value: Uint8Array, revision: number): Promise<number> {
    if ((this.entries.get(key)?.revision ?? 0) !== revision) throw new Error(`wrong last sequence: ${key} is not at ${revision}`)
    return this.set(key, value, "PUT")
  }

  async delete(key: string, options: { readonly previousSeq?: number } = {}): Promise<void> {
    if (options.previousSeq !== undefined && (this.entries.get(key)?.revision ?? 0) !== options.previousSeq) throw new Error(`wrong last sequence: ${key}`)
    this.set(key, new Uint8Array(), "DEL")
  }

  /** The entries matching `key` as they are now, then `initializedFn`; no later writes. */
  async watch(options: { readonly key: string; readonly initializedFn?: () => void }): Promise<BucketWatch> {
    const entries = [...this.entries].filter(([key]) => matchesFilter(options.key, key)).map(([key, e]) => ({ key, value: e.value, operation: e.operation, revision: e.revision, created: e.created }))
    let stopped = false
    return {
      stop: () => {
        stopped = true
      },
      [Symbol.asyncIterator]: async function* () {
        for (const entry of entries) if (!stopped) yield entry
        options.initializedFn?.()
      }
    }
  }

  putUnacked(key: string, value: Uint8Array): void {
    this.set(key, value, "PUT")
  }

  deleteUnacked(key: string): void {
    this.set(key, new Uint8Array(), "DEL")
  }

  async barrier(): Promise<void> {}

  private set(key: string, value: Uint8Array, operation: string): number {
    this.revision++
    this.entries.set(key, { value: value.slice(), revision: this.revision, operation, created: new Date() })
    return this.revision
  }
}
