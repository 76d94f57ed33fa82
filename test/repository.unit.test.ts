/**
 * The task repository over the in-memory event log: commands decided against the folded history
 * and appended under the expected sequence, rejections as data that append nothing, lost races
 * re-read and decided again — no NATS.
 */
import { describe, expect, it } from "vitest"
import { randomUUID } from "node:crypto"
import type { TaskCommand } from "../src/domain/decide.js"
import { fold, type TaskState } from "../src/domain/events.js"
import { InMemoryEventLog } from "../src/eventlog/memory.js"
import { createTask } from "../src/tasks/create.js"
import { DEFAULT_LIMITS } from "../src/tasks/limits.js"
import { TaskRepository, type ApplyOutcome } from "../src/tasks/repository.js"
import { Telemetry } from "../src/tracing/spans.js"
import { ConcurrencyConflict } from "../src/eventlog/errors.js"
import type { AppendRequest, AppendResult, EventLog } from "../src/eventlog/EventLog.js"

const TENANT = "acme"
const T0 = new Date("2026-01-05T10:00:00.000Z")
const later = (seconds: number) => new Date(T0.getTime() + seconds * 1000)

const given = () => {
  const log = new InMemoryEventLog({ streamPrefix: "REPO", subjectRoot: "repo" })
  return { log, repo: new TaskRepository(log, new Telemetry()) }
}

const create = (taskId: string) => (now: Date): TaskCommand => ({ type: "CreateTask", taskId, tenant: TENANT, now, command: "resize", payload: { width: 640 }, priority: 0, maxAttempts: 3 })
const claim = (taskId: string, workerId: string) => (now: Date): TaskCommand => ({ type: "ClaimTask", taskId, tenant: TENANT, now, workerId, leaseSeconds: 30, leaseHandle: `handle-${workerId}` })
const complete = (taskId: string, workerId: string, attempt?: number) => (now: Date): TaskCommand => ({ type: "CompleteTask", taskId, tenant: TENANT, now, workerId, attempt, result: { ok: true } })

const stateOf = (outcome: ApplyOutcome): TaskState | null => outcome.snapshot.state
const traceIdOf = (traceparent: string | undefined) => traceparent?.split("-")[1]
const spanIdOf = (traceparent: string | undefined) => traceparent?.split("-")[2]

describe("the task repository over the in-memory event log", () => {
  it("takes a task from create through claim to complete, each event appended after the one it was decided on", async () => {
    const { log, repo } = given()
    const taskId = randomUUID()
    const created = await repo.apply(TENANT, taskId, create(taskId), { now: () => T0 })
    expect(created.ok).toBe(true)
    expect(stateOf(created)).toMatchObject({ status: "PENDING", attempts: 0, version: 1, createdSeq: 1 })
    const claimed = await repo.apply(TENANT, taskId, claim(taskId, "w1"), { now: () => later(1) })
    expect(stateOf(claimed)).toMatchObject({ status: "IN_PROGRESS", attempts: 1, workerId: "w1", leaseUntil: later(31).toISOString(), leaseHandle: "handle-w1", version: 2 })
    const completed = await repo.apply(TENANT, taskId, complete(taskId, "w1", 1), { now: () => later(5) })
    expect(stateOf(completed)).toMatchObject({ status: "COMPLETED", result: { ok: true }, leaseHandle: undefined, version: 3 })

    const history = await log.readTask(TENANT, taskId)
    expect(history.events.map((e) => [e.seq, e.prevSeq, e.event.type])).toEqual([
      [1, 0, "TaskCreated"],
      [2, 1, "TaskClaimed"],
      [3, 2, "TaskCompleted"]
    ])
    // What the repository evolved as it went is what the log folds to.
    expect(fold(history.events)).toEqual(stateOf(completed))
    expect((await repo.load(TENANT, taskId)).state).toEqual(stateOf(completed))
    // Every transition after the create is parented on the trace the create persisted.
    const traceIds = history.events.map((e) => traceIdOf(e.trace?.traceparent))
    expect(new Set(traceIds).size).toBe(1)
    const createSpan = spanIdOf(history.events[0]?.trace?.traceparent)
    expect(history.events.slice(1).map((e) => e.trace?.parentSpanId)).toEqual([createSpan, createSpan])
  })

  it("refuses a result from a worker whose lease was taken over after it ran out, appending nothing", async () => {
    const { log, repo } = given()
    const taskId = randomUUID()
    await repo.apply(TENANT, taskId, create(taskId), { now: () => T0 })
    await repo.apply(TENANT, taskId, claim(taskId, "w1"), { now: () => T0 })
    const takeover = await repo.apply(TENANT, taskId, claim(taskId, "w2"), { now: () => later(31) })
    expect(takeover.ok && takeover.appended.map((a) => a.stored.event.type)).toEqual(["TaskLeaseExpired", "TaskClaimed"])
    expect(stateOf(takeover)).toMatchObject({ status: "IN_PROGRESS", workerId: "w2", attempts: 2 })
    const version = (await log.readTask(TENANT, taskId)).version

    for (const stale of [complete(taskId, "w1"), complete(taskId, "w1", 1), complete(taskId, "w2", 1)]) {
      const outcome = await repo.apply(TENANT, taskId, stale, { now: () => later(32) })
      expect(outcome).toMatchObject({ ok: false, rejection: { _tag: "Rejection", reason: "lease_lost" } })
    }
    expect((await log.readTask(TENANT, taskId)).version).toBe(version)
    expect(stateOf(await repo.apply(TENANT, taskId, complete(taskId, "w2", 2), { now: () => later(33) }))).toMatchObject({ status: "COMPLETED", workerId: "w2" })
  })

  it("refuses a claim while the lease holds and a result for a task nobody claimed, appending nothing", async () => {
    const { log, repo } = given()
    const taskId = randomUUID()
    await repo.apply(TENANT, taskId, create(taskId), { now: () => T0 })
    expect(await repo.apply(TENANT, taskId, complete(taskId, "w1"), { now: () => T0 })).toMatchObject({ ok: false, rejection: { reason: "not_in_progress" } })
    await repo.apply(TENANT, taskId, claim(taskId, "w1"), { now: () => T0 })
    const early = await repo.apply(TENANT, taskId, claim(taskId, "w2"), { now: () => later(10) })
    expect(early).toMatchObject({ ok: false, rejection: { reason: "leased", retryAt: later(30) } })
    expect((await log.readTask(TENANT, taskId)).events.map((e) => e.event.type)).toEqual(["TaskCreated", "TaskClaimed"])
  })

  it("lets one of two racing claims win; the loser re-reads, decides again and is told the task is leased", async () => {
    const { log, repo } = given()
    const taskId = randomUUID()
    await repo.apply(TENANT, taskId, create(taskId), { now: () => T0 })
    const known = await repo.load(TENANT, taskId)
    const outcomes = await Promise.all(["w1", "w2"].map((w) => repo.apply(TENANT, taskId, claim(taskId, w), { known, now: () => later(1) })))
    expect(outcomes.filter((o) => o.ok)).toHaveLength(1)
    expect(outcomes.find((o) => !o.ok)).toMatchObject({ ok: false, rejection: { reason: "leased" } })
    expect((await log.readTask(TENANT, taskId)).events.map((e) => e.event.type)).toEqual(["TaskCreated", "TaskClaimed"])
  })

  it("creates a task once per idempotency key, however often and however concurrently it is asked", async () => {
    const { log, repo } = given()
    const first = await createTask(repo, DEFAULT_LIMITS, TENANT, { command: "resize", idempotencyKey: "order-42" })
    const again = await createTask(repo, DEFAULT_LIMITS, TENANT, { command: "resize", idempotencyKey: "order-42", payload: { other: true } })
    const racing = await Promise.all(Array.from({ length: 5 }, () => createTask(repo, DEFAULT_LIMITS, TENANT, { command: "resize", idempotencyKey: "order-42" })))
    for (const view of [again, ...racing]) expect(view).toEqual(first)
    const history = await log.readTask(TENANT, first.id)
    expect(history.events.map((e) => e.event.type)).toEqual(["TaskCreated"])
    // Another tenant's same key is another task.
    const other = await createTask(repo, DEFAULT_LIMITS, "globex", { command: "resize", idempotencyKey: "order-42" })
    expect(other.id).not.toBe(first.id)
  })

  it("rejects a create on a task that exists as data, appending nothing", async () => {
    const { log, repo } = given()
    const taskId = randomUUID()
    await repo.apply(TENANT, taskId, create(taskId), { now: () => T0 })
    const outcome = await repo.apply(TENANT, taskId, create(taskId), { now: () => later(1), known: { state: null, version: 0 } })
    expect(outcome).toMatchObject({ ok: false, rejection: { reason: "already_exists" }, snapshot: { version: 1, state: { status: "PENDING" } } })
    expect((await log.readTask(TENANT, taskId)).version).toBe(1)
  })

  it("re-reads and decides again after each lost race, up to maxConflictRetries, then rejects with the ConcurrencyConflict", async () => {
    const memory = new InMemoryEventLog({ streamPrefix: "REPO", subjectRoot: "repo" })
    const taskId = randomUUID()
    await new TaskRepository(memory, new Telemetry()).apply(TENANT, taskId, create(taskId), { now: () => T0 })
    // A task someone always gets to first: every append after the create loses its race.
    const counts = { appends: 0, reads: 0 }
    const hot: EventLog = {
      naming: memory.naming,
      append: async (request: AppendRequest): Promise<AppendResult> => {
        counts.appends++
        return { ok: false, error: new ConcurrencyConflict({ subject: `repo.evt.${TENANT}.${taskId}`, expectedSeq: request.expectedSeq, actualSeq: request.expectedSeq + 1 }) }
      },
      readTask: (tenant, id, fromSeq) => {
        counts.reads++
        return memory.readTask(tenant, id, fromSeq)
      }
    }
    const repo = new TaskRepository(hot, new Telemetry(), { maxConflictRetries: 3 })
    const rejected = await repo.apply(TENANT, taskId, claim(taskId, "w1"), { now: () => later(1) }).catch((e: unknown) => e)
    expect(rejected).toBeInstanceOf(ConcurrencyConflict)
    // The first try and three more, each after reading the task again.
    expect(counts).toEqual({ appends: 4, reads: 4 })
  })
})
