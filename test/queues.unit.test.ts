import { describe, expect, it } from "vitest"
import type { TaskState, TaskStatus } from "../src/domain/events.js"
import { NewestTasks } from "../src/tasks/newest.js"
import { QueueTally } from "../src/tasks/queues.js"

const NOW = new Date("2026-03-01T12:00:00.000Z")
let n = 0

const task = (command: string, status: TaskStatus, overrides: Partial<TaskState> = {}): TaskState => ({
  id: `00000000-0000-4000-8000-${String(++n).padStart(12, "0")}`,
  tenant: "acme",
  command,
  payload: null,
  priority: 0,
  webhook: undefined,
  maxAttempts: 5,
  runAt: undefined,
  leaseSeconds: undefined,
  hasIdempotencyKey: false,
  status,
  attempts: 0,
  workerId: undefined,
  leaseUntil: undefined,
  leaseHandle: undefined,
  result: undefined,
  error: undefined,
  artifacts: undefined,
  createdAt: "2026-03-01T11:00:00.000Z",
  updatedAt: "2026-03-01T11:00:00.000Z",
  traceParent: undefined,
  traceState: undefined,
  version: 1,
  createdSeq: n,
  webhookDelivered: false,
  purged: false,
  ...overrides
})

const tally = (states: ReadonlyArray<TaskState>, only?: string) => {
  const t = new QueueTally(NOW, only)
  for (const s of states) t.add(s)
  return t
}

describe("queue statistics from task states", () => {
  it("counts pending tasks as ready or delayed by runAt, leased ones as in progress, per lane", () => {
    const t = tally([
      task("resize", "PENDING"),
      task("resize", "PENDING", { priority: 5, runAt: "2026-03-01T11:59:59.000Z" }),
      task("resize", "PENDING", { priority: 5, runAt: "2026-03-01T12:00:01.000Z" }),
      task("resize", "PENDING", { runAt: "2026-03-02T00:00:00.000Z" }),
      task("resize", "IN_PROGRESS", { priority: 5 }),
      task("encode", "IN_PROGRESS", { priority: 9 })
    ])
    expect(t.command("resize")).toEqual({
      command: "resize",
      ready: 2,
      delayed: 2,
      inProgress: 1,
      lanes: { "0": { ready: 1, delayed: 1, inProgress: 0 }, "5": { ready: 1, delayed: 1, inProgress: 1 } },
      deadLettered: 0
    })
    expect(t.overview().totals).toEqual({ ready: 2, delayed: 2, inProgress: 2, deadLettered: 0 })
    expect(t.overview().commands.map((q) => q.command)).toEqual(["encode", "resize"])
  })

  it("counts dead letters until purged, outside the lanes, and leaves ended tasks out", () => {
    const t = tally([
      task("resize", "DEAD_LETTERED", { priority: 3 }),
      task("resize", "DEAD_LETTERED", { purged: true }),
      task("resize", "COMPLETED"),
      task("resize", "FAILED"),
      task("archive", "CANCELLED")
    ])
    expect(t.command("resize")).toEqual({ command: "resize", ready: 0, delayed: 0, inProgress: 0, lanes: {}, deadLettered: 1 })
    expect(t.overview()).toEqual({
      commands: [{ command: "resize", ready: 0, delayed: 0, inProgress: 0, lanes: {}, deadLettered: 1 }],
      totals: { ready: 0, delayed: 0, inProgress: 0, deadLettered: 1 }
    })
  })

  it("answers all zero for a command with no task, and counts only the command asked for", () => {
    const t = tally([task("resize", "PENDING"), task("encode", "PENDING")], "encode")
    expect(t.command("nothing")).toEqual({ command: "nothing", ready: 0, delayed: 0, inProgress: 0, lanes: {}, deadLettered: 0 })
    expect(t.overview().commands).toEqual([{ command: "encode", ready: 1, delayed: 0, inProgress: 0, lanes: { "0": { ready: 1, delayed: 0, inProgress: 0 } }, deadLettered: 0 }])
  })
})

describe("the newest tasks of a listing", () => {
  it("keeps the newest `limit` of thousands visited in any order, holding at most twice `limit`", () => {
    const states = Array.from({ length: 3_000 }, () => task("resize", "PENDING"))
    const shuffled = states.map((s) => ({ s, k: Math.random() })).sort((a, b) => a.k - b.k).map(({ s }) => s)
    const newest = new NewestTasks(7)
    let most = 0
    for (const s of shuffled) {
      newest.offer(s, true)
      most = Math.max(most, newest.held)
    }
    expect(newest.newest().map((s) => s.createdSeq)).toEqual(states.slice(-7).reverse().map((s) => s.createdSeq))
    expect(most).toBeLessThanOrEqual(14)
  })

  it("lists a task once, as last visited, and leaves it out when its last version does not match", () => {
    const older = task("resize", "PENDING")
    const kept = task("resize", "PENDING")
    const changed = task("resize", "PENDING")
    const newest = new NewestTasks(2)
    for (const s of [older, kept, changed]) newest.offer(s, true)
    newest.offer({ ...kept, status: "IN_PROGRESS" }, true)
    newest.offer({ ...changed, status: "COMPLETED" }, false)
    expect(newest.newest().map((s) => [s.id, s.status])).toEqual([
      [kept.id, "IN_PROGRESS"],
      [older.id, "PENDING"]
    ])
  })
})
