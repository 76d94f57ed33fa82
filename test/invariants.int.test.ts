/**
 * Property: whatever interleaving of create / claim / heartbeat / nack / abandon / complete /
 * lease expiry several workers perform against the real log, the log keeps the task invariants.
 * Time is virtual (each decision gets the run's clock; "expire" moves it past the lease), writes
 * are real appends racing on a real nats-server.
 */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import type { TaskCommand } from "../src/domain/decide.js"
import { TERMINAL, evolve, fold, type StoredEvent, type TaskState } from "../src/domain/events.js"
import { newTaskId } from "../src/domain/ids.js"
import type { AppendRequest, AppendResult, EventLog } from "../src/eventlog/EventLog.js"
import { JetStreamEventLog } from "../src/eventlog/jetstream.js"
import { TaskRepository } from "../src/tasks/repository.js"
import { Telemetry } from "../src/tracing/spans.js"
import { freshNaming, provision, useNatsServer } from "./support/harness.js"

const nats = useNatsServer()
const LEASE = 10

/** Records every append and its outcome, so the test can check the expected sequences. */
class RecordingLog implements EventLog {
  readonly appends: Array<{ request: AppendRequest; result: AppendResult }> = []
  constructor(private readonly inner: EventLog) {}
  get naming() {
    return this.inner.naming
  }
  async append(request: AppendRequest) {
    const result = await this.inner.append(request)
    this.appends.push({ request, result })
    return result
  }
  readTask(tenant: string, taskId: string) {
    return this.inner.readTask(tenant, taskId)
  }
}

type Action =
  | { readonly kind: "claim" | "heartbeat" | "nack" | "abandon" | "complete"; readonly worker: number; readonly task: number }
  | { readonly kind: "expire" }

const action: fc.Arbitrary<Action> = fc.oneof(
  fc.record({ kind: fc.constantFrom("claim", "heartbeat", "nack", "abandon", "complete"), worker: fc.nat(2), task: fc.nat(2) }),
  fc.constant({ kind: "expire" } as const)
)

const scenario = fc.record({
  maxAttempts: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 3, maxLength: 3 }),
  /** Groups of actions run concurrently; groups run one after another. */
  groups: fc.array(fc.array(action, { minLength: 1, maxLength: 3 }), { minLength: 4, maxLength: 12 })
})

const commandFor = (a: Exclude<Action, { kind: "expire" }>, taskId: string, now: Date): TaskCommand => {
  const base = { taskId, tenant: "prop", now, workerId: `w${a.worker}` }
  switch (a.kind) {
    case "claim":
      return { ...base, type: "ClaimTask", leaseSeconds: LEASE, leaseHandle: `handle-${a.worker}` }
    case "heartbeat":
      return { ...base, type: "HeartbeatTask", extendSeconds: LEASE }
    case "nack":
      return { ...base, type: "NackTask", reason: "prop", delaySeconds: 0 }
    case "abandon":
      return { ...base, type: "AbandonTask" }
    case "complete":
      return { ...base, type: "CompleteTask", result: a.worker }
  }
}

/** Checks one task's history against the invariants; returns the violations found. */
const violations = (history: ReadonlyArray<StoredEvent>, maxAttempts: number): Array<string> => {
  const found: Array<string> = []
  let state: TaskState | null = null
  let terminal = 0
  for (const stored of history) {
    const e = stored.event
    if (e.type === "TaskClaimed" && state?.status !== "PENDING") found.push(`claim at seq ${stored.seq} on a ${state?.status ?? "missing"} task (two live leases)`)
    if (e.type === "TaskLeaseExpired" && Date.parse(state?.leaseUntil ?? "") > Date.parse(e.at))
      found.push(`lease expired at seq ${stored.seq} before its end ${state?.leaseUntil} (two live leases)`)
    if (TERMINAL.has((evolve(state, stored) ?? state)?.status ?? "PENDING") && !TERMINAL.has(state?.status ?? "PENDING")) terminal++
    state = evolve(state, stored)
    if (state !== null && state.attempts > maxAttempts) found.push(`attempts ${state.attempts} > maxAttempts ${maxAttempts} at seq ${stored.seq}`)
  }
  if (terminal > 1) found.push(`${terminal} terminal events`)
  return found
}

describe("task invariants under random interleavings on the real log", () => {
  it("never two live leases, at most one terminal event, attempts within maxAttempts, every append on the expected sequence, and the log's state equals what callers were told", async () => {
    const nc = await nats.connect()
    const naming = freshNaming()
    await provision(nc, naming)
    await fc.assert(
      fc.asyncProperty(scenario, async ({ maxAttempts, groups }) => {
        const log = new RecordingLog(JetStreamEventLog.connect(nc, naming))
        const repo = new TaskRepository(log, new Telemetry())
        let clock = Date.now()
        const ids = [newTaskId(), newTaskId(), newTaskId()]
        const reported = new Map<string, TaskState>()
        const report = (state: TaskState | null) => {
          if (state === null) return
          const seen = reported.get(state.id)
          if (seen === undefined || seen.version < state.version) reported.set(state.id, state)
        }
        for (const [i, taskId] of ids.entries()) {
          const created = await repo.apply("prop", taskId, (now) => ({ type: "CreateTask", taskId, tenant: "prop", now, command: "prop", payload: null, priority: 0, maxAttempts: maxAttempts[i] ?? 1 }))
          report(created.snapshot.state)
        }
        for (const group of groups) {
          await Promise.all(
            group.map(async (a) => {
              if (a.kind === "expire") {
                clock += (LEASE + 1) * 1000
                return
              }
              const taskId = ids[a.task] ?? ""
              const outcome = await repo.apply("prop", taskId, (now) => commandFor(a, taskId, now), { now: () => new Date(clock) })
              report(outcome.snapshot.state)
            })
          )
        }
        for (const [i, taskId] of ids.entries()) {
          const history = await log.readTask("prop", taskId)
          expect(violations(history.events, maxAttempts[i] ?? 1)).toEqual([])
          expect(fold(history.events)).toEqual(reported.get(taskId))
          const seqs = history.events.map((e) => e.seq)
          for (const { request, result } of log.appends.filter((entry) => entry.request.taskId === taskId && entry.result.ok)) {
            if (!result.ok) continue
            const index = seqs.indexOf(result.seq)
            expect(request.expectedSeq).toBe(index === 0 ? 0 : seqs[index - 1])
          }
        }
      }),
      { numRuns: 30 }
    )
  })
})
