/**
 * Replaying the log (DESIGN §7): read a selection of `CODEQ_EVENTS` in order, group it by task,
 * and hand each task's trace block — spans rebuilt, chain audited — to the caller as the task
 * ends, with bounded memory. With `follow`, keeps reading new events as they are appended until
 * the signal aborts; the open tasks are then handed on as they stand.
 */
import { eventSubject, eventSubjects, type Naming } from "../../streams/definitions.js"
import { eventsStream } from "../../streams/definitions.js"
import type { AuditOptions } from "./audit.js"
import { compareNs, nsFromMs } from "./core.js"
import { readSubject } from "../eventlog/window/direct.js"
import type { LogRecord, ReplayFilter, TaskTrace } from "./model.js"
import type { BodyPolicy } from "../eventlog/window/records.js"
import { openSource, type ReplayConnection } from "../eventlog/window/source.js"
import { AUDIT_BODIES, TaskAssembler, auditFragment, needsPrefix, type Closed, type Fragment, type TaskAudit, type TraceDetail } from "./tasks.js"
import type { LogSource } from "../eventlog/window/wire.js"
import { Duration, Schedule } from "effect"
import { RetryAborted, retryingPromise } from "../domain/retry.js"

/** Opening the log again after the server went away: 500 ms more each time, at most 10 s apart. */
const REOPEN = Schedule.union(Schedule.linear(Duration.millis(500)), Schedule.spaced(Duration.seconds(10)))

export interface ReplayOptions<D extends TraceDetail = TraceDetail> {
  readonly filter?: ReplayFilter
  /** `spans`: every span rebuilt as the live one was; `ids`: an audit only (no span kept, bodies barely read). */
  readonly detail: D
  /** Keep reading new events until `signal` aborts. */
  readonly follow?: boolean
  readonly signal?: AbortSignal
  /** Events per pull request. Default 20,000. */
  readonly batch?: number
  readonly audit?: AuditOptions
  /** Called after each batch read. */
  readonly onProgress?: (progress: ReplayProgress) => void
  /** Tasks whose earlier events are being read back at once, at most. Default 16. */
  readonly contextReads?: number
  /** `nats` reads through nats.js even where the wire reader could. Default `auto`. */
  readonly reader?: "auto" | "nats"
}

export interface ReplayProgress {
  /** Events of the selection read so far. */
  readonly read: number
  /** Events the selection held when the replay began (its length, for an ETA). */
  readonly total: number
  /** Events still to read right now (grows while following). */
  readonly pending: number | undefined
  readonly openTasks: number
  /** Everything appended so far has been read (following: waiting for new events). */
  readonly caughtUp: boolean
}

export interface ReplayResult {
  readonly events: number
  readonly tasks: number
  /** Last sequence read. */
  readonly position: number
  readonly reader: "wire" | "nats"
  readonly elapsedMs: number
}

/** What each task yields: its trace block (spans), or its audit (ids). */
export type TraceOf<D extends TraceDetail> = D extends "spans" ? TaskTrace : TaskAudit

/** The subject filter of a selection: as narrow as its task id and tenant allow. */
export const filterSubjectOf = (naming: Naming, filter: ReplayFilter): string => {
  if (filter.taskId !== undefined) return filter.tenant !== undefined ? eventSubject(naming, filter.tenant, filter.taskId) : `${naming.subjectRoot}.evt.*.${filter.taskId}`
  if (filter.tenant !== undefined) return eventSubjects(naming, filter.tenant)
  return `${naming.subjectRoot}.evt.>`
}

const onTrace = (records: ReadonlyArray<LogRecord>, traceId: string): boolean => records.some((r) => r.traceId === traceId)

const commandOf = (records: ReadonlyArray<LogRecord>): unknown => {
  const body = records.find((r) => r.type === "TaskCreated")?.body
  return typeof body === "object" && body !== null ? (body as { command?: unknown }).command : undefined
}


/** Reads the selection and hands each task's trace to `handle` (awaited) as the task ends. */
export const replayLog = async <D extends TraceDetail>(
  conn: ReplayConnection,
  naming: Naming,
  options: ReplayOptions<D>,
  handle: (trace: TraceOf<D>) => void | Promise<void>
): Promise<ReplayResult> => {
  const started = Date.now()
  const filter = options.filter ?? {}
  // An audit reads bodies only where they decide a task's end, and a create's for --command.
  const bodies: BodyPolicy =
    options.detail === "spans" ? "all" : filter.command === undefined ? AUDIT_BODIES : (type, b, from, to) => type === "TaskCreated" || AUDIT_BODIES(type, b, from, to)
  const stream = eventsStream(naming)
  const untilNs = filter.until === undefined ? undefined : nsFromMs(filter.until.getTime())
  const connection: ReplayConnection = options.reader === "nats" ? { nc: conn.nc } : conn
  const open = (fromSeq: number, first: boolean) =>
    openSource(connection, naming, {
      filterSubject: filterSubjectOf(naming, filter),
      start: first && filter.since !== undefined ? { time: filter.since } : { seq: fromSeq },
      batch: options.batch ?? 20_000,
      bodies,
      headers: options.detail === "spans" ? "spans" : "audit"
    })

  // Loaded only to rebuild spans: the event schemas (Effect) are most of an audit's memory otherwise.
  const build = options.detail === "spans" ? (await import("./trace.js")).buildTaskTrace : undefined
  const assembler = new TaskAssembler(options.detail, options.audit, filter.traceId)
  const inflight = new Set<Promise<void>>()
  let tasks = 0
  const deliver = async (fragment: Fragment, prefix: ReadonlyArray<LogRecord>) => {
    const context = [...prefix, ...fragment.records]
    if (filter.traceId !== undefined && !onTrace(context, filter.traceId)) return
    if (filter.command !== undefined && commandOf(context) !== filter.command) return
    tasks++
    await handle((build !== undefined ? build(fragment, prefix, options.audit) : auditFragment(fragment, prefix, options.audit)) as TraceOf<D>)
  }
  // Synchronous unless something must be awaited (a slow handler, a read of earlier events): an
  // audit hands a task on without a promise.
  const emit = (closed: Closed): void | Promise<void> => {
    if ("audit" in closed) {
      if (filter.traceId !== undefined && !closed.onTrace) return
      if (filter.command !== undefined && closed.audit.command !== filter.command) return
      tasks++
      return handle(closed.audit as TraceOf<D>)
    }
    const fragment = closed.fragment
    if (!needsPrefix(fragment)) return deliver(fragment, [])
    return readEarlier(fragment)
  }
  // A read of earlier events that fails ends the replay (after the reads in flight), never silently.
  let contextFailure: unknown
  const readEarlier = async (fragment: Fragment): Promise<void> => {
    while (inflight.size >= (options.contextReads ?? 16)) await Promise.race(inflight)
    if (contextFailure !== undefined) throw contextFailure
    const first = fragment.records[0]
    const job: Promise<void> = readSubject(conn.nc, stream, fragment.subject, { beforeSeq: first?.seq ?? 0, bodies })
      .then((prefix) => deliver(fragment, prefix))
      .catch((error: unknown) => void (contextFailure ??= error))
      .finally(() => inflight.delete(job))
    inflight.add(job)
  }

  const fromSeq = Math.max(1, filter.fromSeq ?? 1)
  let opened = await open(fromSeq, true)
  let source: LogSource = opened.source
  const total = opened.pendingAtStart
  let position = fromSeq - 1
  let read = 0
  let failures = 0
  const aborted = () => options.signal?.aborted === true
  const abort = () => void source.close()
  options.signal?.addEventListener("abort", abort)
  try {
    let done = !options.follow && total === 0
    while (!done && !aborted()) {
      let batch: ReadonlyArray<LogRecord>
      try {
        batch = await source.next(1_000)
        failures = 0
      } catch (error) {
        if (aborted()) break
        // The server restarted, the consumer went away: read on from where we are.
        if (++failures > (options.follow ? Number.POSITIVE_INFINITY : 3)) throw error
        await source.close()
        await opened.remove()
        // Open again from where we are, as often as REOPEN allows (for ever when following).
        const reopen = () => open(position + 1, false)
        const schedule = options.follow ? REOPEN : REOPEN.pipe(Schedule.intersect(Schedule.recurs(3)))
        const reopened = await retryingPromise(reopen, (attempt) => !attempt.ok && !aborted(), schedule, options.signal).catch((again: unknown) => {
          if (again instanceof RetryAborted) return undefined
          throw again
        })
        if (reopened === undefined) break
        opened = reopened
        source = opened.source
        continue
      }
      for (const record of batch) {
        // Already read (a consumer made again resends), or before the window (a start by time).
        if (record.seq <= position) continue
        if ((filter.toSeq !== undefined && record.seq > filter.toSeq) || (untilNs !== undefined && compareNs(record.timeNs, untilNs) > 0)) {
          done = true
          break
        }
        position = record.seq
        read++
        const closed = assembler.add(record)
        if (closed === undefined) continue
        const pending = emit(closed)
        if (pending !== undefined) await pending
      }
      const caughtUp = source.pending === 0 || (batch.length === 0 && source.pending === undefined)
      options.onProgress?.({ read, total, pending: source.pending, openTasks: assembler.size, caughtUp })
      if (!options.follow && source.pending === 0) done = true
    }
    for (const closed of assembler.drain()) await emit(closed)
    await Promise.all(inflight)
    if (contextFailure !== undefined) throw contextFailure
  } finally {
    options.signal?.removeEventListener("abort", abort)
    await source.close()
    await opened.remove()
  }
  return { events: read, tasks, position, reader: opened.reader, elapsedMs: Date.now() - started }
}
