/**
 * The fault suite's bookkeeping: what a producer was told (creates acknowledged), what handlers
 * did, and — the judge — what the log itself says about every task afterwards: created and
 * acknowledged, completed once, completed twice, dead-lettered, pending, lost, and the longest a
 * task waited after the fault for its next step. Printed as one block per test.
 */
import type { StoredEvent } from "../../src/domain/events.js"
import type { EventLog } from "../../src/eventlog/EventLog.js"
import type { Producer } from "../../src/sdk/producer.js"
import type { CreateTaskInput } from "../../src/tasks/create.js"
import type { NatsConnection } from "nats"
import { waitFor } from "./harness.js"
import { eventSubjects, eventsStream, parseEventSubject, type Naming } from "../../streams/definitions.js"

const TERMINAL = new Set(["TaskCompleted", "TaskFailed", "TaskDeadLettered", "TaskCancelled"])

/** What producers were told and what handlers did, as the test saw it. */
export class Ledger {
  /** Task id → when its create was acknowledged. */
  readonly acked = new Map<string, number>()
  /** Creates that failed and were sent again with the same idempotency key. */
  createRetries = 0
  /** Task id → handler runs that returned a result. */
  readonly handled = new Map<string, number>()
  /** Task id → handler runs started. */
  readonly started = new Map<string, number>()

  handlerStarted(taskId: string): void {
    this.started.set(taskId, (this.started.get(taskId) ?? 0) + 1)
  }

  handlerFinished(taskId: string): void {
    this.handled.set(taskId, (this.handled.get(taskId) ?? 0) + 1)
  }

  /** A handler that records its runs here; it holds each task `workMs` (work in flight at a fault). */
  handler(workMs = 0): (task: { readonly id: string }) => Promise<{ readonly ok: true }> {
    return async (task) => {
      this.handlerStarted(task.id)
      if (workMs > 0) await new Promise((resolve) => setTimeout(resolve, workMs))
      this.handlerFinished(task.id)
      return { ok: true }
    }
  }

  /** Tasks whose handler returned a result more than once. */
  get handledTwice(): number {
    return [...this.handled.values()].filter((n) => n > 1).length
  }
}

/**
 * Creates `count` tasks one after another (up to `concurrency` in flight), each with its own
 * idempotency key; a create that fails is sent again with the same key — what a producer should
 * do after a timeout — until it is acknowledged or `deadlineMs` passes.
 */
export const produce = async (
  producer: Producer,
  ledger: Ledger,
  count: number,
  input: (i: number) => CreateTaskInput,
  options: { readonly concurrency?: number; readonly deadlineMs?: number; readonly keyPrefix?: string; readonly onCreated?: (n: number) => void } = {}
): Promise<void> => {
  const deadline = Date.now() + (options.deadlineMs ?? 90_000)
  const prefix = options.keyPrefix ?? `k-${Date.now().toString(36)}`
  let next = 0
  const one = async (i: number) => {
    const request = { ...input(i), idempotencyKey: `${prefix}-${i}` }
    for (;;) {
      try {
        const task = await producer.create(request)
        ledger.acked.set(task.id, Date.now())
        options.onCreated?.(ledger.acked.size)
        return
      } catch (error) {
        if (Date.now() > deadline) throw error
        ledger.createRetries++
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
    }
  }
  await Promise.all(
    Array.from({ length: options.concurrency ?? 8 }, async () => {
      while (next < count) await one(next++)
    })
  )
}

export interface TaskFate {
  readonly taskId: string
  readonly events: ReadonlyArray<StoredEvent>
  readonly completed: number
  readonly terminal: boolean
  /** Longest time, after the fault, between one step of the task and the next (or now). */
  readonly waitedMs: number
}

export interface Accounting {
  /** Creates acknowledged to a producer. */
  readonly createdAcked: number
  /** Tasks of the tenant the log holds (a create whose ack was lost may be there too). */
  readonly inLog: number
  readonly completedOnce: number
  readonly completedTwice: number
  readonly failed: number
  readonly deadLettered: number
  readonly pending: number
  /** Acknowledged creates with no TaskCreated in the log. */
  readonly lost: number
  /** Tasks whose handler returned a result twice (the ledger's view, not the log's). */
  readonly handledTwice: number
  readonly createRetries: number
  /** The task that waited longest after the fault, and how long. */
  readonly longestWaitMs: number
  readonly longestWaitTask: string | undefined
  readonly fates: ReadonlyMap<string, TaskFate>
}

/** Every task subject of `tenant` in the log (one stream-info request). */
export const taskIdsInLog = async (nc: NatsConnection, naming: Naming, tenant: string): Promise<ReadonlyArray<string>> => {
  const jsm = await nc.jetstreamManager({ checkAPI: false })
  const info = await jsm.streams.info(eventsStream(naming), { subjects_filter: eventSubjects(naming, tenant) })
  return Object.keys(info.state.subjects ?? {}).flatMap((subject) => {
    const parsed = parseEventSubject(naming, subject)
    return parsed === undefined ? [] : [parsed.taskId]
  })
}

const fateOf = (taskId: string, events: ReadonlyArray<StoredEvent>, faultAt: number, now: number): TaskFate => {
  let waitedMs = 0
  let terminal = false
  let completed = 0
  let previous: number | undefined
  for (const e of events) {
    const at = e.time.getTime()
    if (e.event.type === "TaskCompleted") completed++
    if (!terminal && previous !== undefined && at > faultAt) waitedMs = Math.max(waitedMs, at - Math.max(previous, faultAt))
    if (TERMINAL.has(e.event.type)) terminal = true
    previous = at
  }
  if (!terminal && previous !== undefined) waitedMs = Math.max(waitedMs, now - Math.max(previous, faultAt))
  return { taskId, events, completed, terminal, waitedMs }
}

/** Reads every task of the tenant (and every acknowledged one) from the log and counts their fates. */
export const accountFromLog = async (
  log: EventLog,
  nc: NatsConnection,
  tenant: string,
  ledger: Ledger,
  options: { readonly faultAt: number }
): Promise<Accounting> => {
  const ids = new Set([...(await taskIdsInLog(nc, log.naming, tenant)), ...ledger.acked.keys()])
  const now = Date.now()
  const fates = new Map<string, TaskFate>()
  const queue = [...ids]
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      for (let id = queue.pop(); id !== undefined; id = queue.pop()) {
        const history = await log.readTask(tenant, id)
        fates.set(id, fateOf(id, history.events, options.faultAt, now))
      }
    })
  )
  let completedOnce = 0
  let completedTwice = 0
  let failed = 0
  let deadLettered = 0
  let pending = 0
  let lost = 0
  let inLog = 0
  let longestWaitMs = 0
  let longestWaitTask: string | undefined
  for (const [id, fate] of fates) {
    const types = fate.events.map((e) => e.event.type)
    if (!types.includes("TaskCreated")) {
      if (ledger.acked.has(id)) lost++
      continue
    }
    inLog++
    if (fate.completed === 1) completedOnce++
    if (fate.completed > 1) completedTwice++
    if (types.includes("TaskFailed")) failed++
    if (types.includes("TaskDeadLettered")) deadLettered++
    if (!fate.terminal) pending++
    if (fate.waitedMs > longestWaitMs) {
      longestWaitMs = fate.waitedMs
      longestWaitTask = id
    }
  }
  return {
    createdAcked: ledger.acked.size,
    inLog,
    completedOnce,
    completedTwice,
    failed,
    deadLettered,
    pending,
    lost,
    handledTwice: ledger.handledTwice,
    createRetries: ledger.createRetries,
    longestWaitMs,
    longestWaitTask,
    fates
  }
}

/** The accounting as the block a test prints. */
/**
 * Waits, up to `timeoutMs`, until every task the ledger saw acknowledged has a TaskCompleted in
 * the log; returns either way — the accounting that follows says what did not.
 */
export const settled = async (log: EventLog, tenant: string, ledger: Ledger, timeoutMs: number): Promise<void> => {
  await waitFor(
    async () => {
      const histories = await Promise.all([...ledger.acked.keys()].map((id) => log.readTask(tenant, id)))
      return histories.every((h) => h.events.some((e) => e.event.type === "TaskCompleted"))
    },
    { timeoutMs, intervalMs: 500, what: "every task to complete" }
  ).catch(() => undefined)
}

export const renderAccounting = (title: string, a: Accounting, extra: Record<string, string | number> = {}): string =>
  [
    `── fault accounting: ${title}`,
    `   created and acknowledged ${a.createdAcked} (in the log: ${a.inLog}; creates sent again: ${a.createRetries})`,
    `   completed once ${a.completedOnce} · completed twice ${a.completedTwice} · failed ${a.failed} · dead-lettered ${a.deadLettered} · pending ${a.pending} · lost ${a.lost}`,
    `   handler results twice ${a.handledTwice} · longest wait after the fault ${(a.longestWaitMs / 1000).toFixed(1)} s${a.longestWaitTask === undefined ? "" : ` (task ${a.longestWaitTask})`}`,
    ...Object.entries(extra).map(([key, value]) => `   ${key}: ${value}`)
  ].join("\n")

/** One task's events as `type@+ms` from its first, for failure messages. */
export const describeFate = (fate: TaskFate | undefined): string => {
  if (fate === undefined) return "unknown task"
  const first = fate.events[0]?.time.getTime() ?? 0
  return `${fate.taskId}: ${fate.events.map((e) => `${e.event.type}@+${e.time.getTime() - first}ms`).join(" ")}`
}
