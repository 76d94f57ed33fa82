/**
 * The task Decider, given / when / then: a history of stored events is folded into the state,
 * a command is decided against it, and the outcome is either the events to append (in order) or
 * a rejection with its `reason` — in which case nothing happens to the log.
 */
import { describe, expect, it } from "vitest"
import { decide, SETTLED, type Decision, type RejectionReason, type TaskCommand } from "../src/domain/decide.js"
import {
  EVENT_SCHEMA_VERSION,
  EVENT_TYPES,
  evolve,
  fold,
  type EventOf,
  type EventTrace,
  type StoredEvent,
  type TaskEvent,
  type TaskEventType,
  type TaskState,
  type TaskStatus
} from "../src/domain/events.js"

// ---------------------------------------------------------------------------------------------
// Fixtures: one task, a clock in seconds from T0, and builders for every event and command.
// ---------------------------------------------------------------------------------------------

const TASK_ID = "0b7e3c1a-6f2d-4c8e-9a1b-3d5f7e9c2a4b"
const TENANT = "acme"
const SUBJECT = `codeq.log.${TENANT}.${TASK_ID}`
const T0 = Date.parse("2026-03-01T12:00:00.000Z")
const W1 = "worker-1"
const W2 = "worker-2"
const LEASE = 60
/** The first claim in the fixtures happens at t=10 s, so its lease ends at t=70 s. */
const CLAIMED_AT = 10
const LEASE_END = CLAIMED_AT + LEASE

const at = (seconds: number): Date => new Date(T0 + seconds * 1000)
const iso = (seconds: number): string => at(seconds).toISOString()

const head = <T extends TaskEventType>(type: T, seconds: number) =>
  ({ v: EVENT_SCHEMA_VERSION, type, taskId: TASK_ID, tenant: TENANT, at: iso(seconds) }) as const

const created = (overrides: Partial<Omit<EventOf<"TaskCreated">, "type">> = {}): EventOf<"TaskCreated"> => ({
  ...head("TaskCreated", 0),
  command: "resize",
  payload: { width: 64 },
  priority: 5,
  maxAttempts: 3,
  ...overrides
})
const claimed = (attempt: number, workerId: string, seconds: number): EventOf<"TaskClaimed"> => ({
  ...head("TaskClaimed", seconds),
  attempt,
  workerId,
  leaseUntil: iso(seconds + LEASE),
  leaseHandle: `$JS.ACK.CODEQ_CLAIMS.claims.1.${attempt}`
})
const heartbeat = (workerId: string, seconds: number, extend: number): EventOf<"TaskHeartbeat"> => ({
  ...head("TaskHeartbeat", seconds),
  workerId,
  leaseUntil: iso(seconds + extend)
})
const abandoned = (workerId: string, seconds: number): EventOf<"TaskAbandoned"> => ({
  ...head("TaskAbandoned", seconds),
  workerId
})
const nacked = (workerId: string, seconds: number): EventOf<"TaskNacked"> => ({
  ...head("TaskNacked", seconds),
  workerId,
  reason: "upstream timeout",
  delaySeconds: 5
})
const leaseExpired = (workerId: string, attempt: number, seconds: number): EventOf<"TaskLeaseExpired"> => ({
  ...head("TaskLeaseExpired", seconds),
  workerId,
  attempt
})
const completed = (workerId: string, seconds: number): EventOf<"TaskCompleted"> => ({
  ...head("TaskCompleted", seconds),
  workerId,
  result: { ok: true },
  artifacts: [{ url: "s3://bucket/out.png" }]
})
const failed = (workerId: string, seconds: number): EventOf<"TaskFailed"> => ({
  ...head("TaskFailed", seconds),
  workerId,
  error: "corrupt input"
})
const deadLettered = (seconds: number): EventOf<"TaskDeadLettered"> => ({
  ...head("TaskDeadLettered", seconds),
  reason: "max_attempts"
})
const requeued = (seconds: number): EventOf<"TaskRequeued"> => ({ ...head("TaskRequeued", seconds), reason: "operator" })
const cancelled = (seconds: number): EventOf<"TaskCancelled"> => ({ ...head("TaskCancelled", seconds), reason: "user" })
const purged = (seconds: number): EventOf<"TaskPurged"> => ({ ...head("TaskPurged", seconds), reason: "operator" })
const webhookDelivered = (seconds: number): EventOf<"WebhookDelivered"> => ({
  ...head("WebhookDelivered", seconds),
  attempt: 1,
  statusCode: 204
})
const webhookFailed = (seconds: number): EventOf<"WebhookFailed"> => ({
  ...head("WebhookFailed", seconds),
  attempt: 1,
  statusCode: 503,
  error: "status",
  final: false
})
const rejected = (seconds: number): EventOf<"TaskRejected"> => ({
  ...head("TaskRejected", seconds),
  field: "priority",
  rule: "range"
})

const TRACE: EventTrace = {
  traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
  tracestate: "rojo=00f067aa0ba902b7",
  parentSpanId: undefined,
  spanStart: "1772366400000000000"
}

/** Events as the log stores them: consecutive sequence numbers from `firstSeq`, `step` apart. */
const store = (events: ReadonlyArray<TaskEvent>, firstSeq = 1, step = 1): Array<StoredEvent> =>
  events.map((event, i) => ({
    seq: firstSeq + i * step,
    subject: SUBJECT,
    time: new Date(Date.parse(event.at)),
    event,
    trace: event.type === "TaskCreated" ? TRACE : undefined
  }))

type CommandType = TaskCommand["type"]
type CommandOf<K extends CommandType> = Extract<TaskCommand, { type: K }>

const base = (now: number) => ({ taskId: TASK_ID, tenant: TENANT, now: at(now) })

/**
 * One command of each type. Lease commands come from the holder of the fixtures' first claim
 * (worker-1, attempt 1) unless a `lease` is given; the claim comes from another worker.
 */
const commands: { readonly [K in CommandType]: (now: number, lease?: { workerId: string; attempt?: number }) => CommandOf<K> } = {
  CreateTask: (now) => ({ ...base(now), type: "CreateTask", command: "resize", payload: { width: 64 }, priority: 5, maxAttempts: 3 }),
  ClaimTask: (now) => ({ ...base(now), type: "ClaimTask", workerId: W2, leaseSeconds: LEASE, leaseHandle: "$JS.ACK.next" }),
  HeartbeatTask: (now, lease = { workerId: W1, attempt: 1 }) => ({ ...base(now), ...lease, type: "HeartbeatTask", extendSeconds: 120 }),
  AbandonTask: (now, lease = { workerId: W1, attempt: 1 }) => ({ ...base(now), ...lease, type: "AbandonTask" }),
  NackTask: (now, lease = { workerId: W1, attempt: 1 }) => ({ ...base(now), ...lease, type: "NackTask", delaySeconds: 30, reason: "busy" }),
  CompleteTask: (now, lease = { workerId: W1, attempt: 1 }) => ({ ...base(now), ...lease, type: "CompleteTask", result: { ok: true } }),
  FailTask: (now, lease = { workerId: W1, attempt: 1 }) => ({ ...base(now), ...lease, type: "FailTask", error: "corrupt input" }),
  CancelTask: (now) => ({ ...base(now), type: "CancelTask", reason: "user" }),
  RequeueTask: (now) => ({ ...base(now), type: "RequeueTask", reason: "operator" }),
  PurgeTask: (now) => ({ ...base(now), type: "PurgeTask", reason: "operator" }),
  RecordWebhook: (now) => ({ ...base(now), type: "RecordWebhook", attempt: 1, delivered: true, statusCode: 200, final: true })
}
const COMMAND_TYPES = Object.keys(commands) as ReadonlyArray<CommandType>

// ---------------------------------------------------------------------------------------------
// Given / when / then
// ---------------------------------------------------------------------------------------------

interface Outcome {
  readonly before: TaskState | null
  readonly decision: Decision
  /** The events the decision appends: none when rejected. */
  readonly appended: ReadonlyArray<TaskEvent>
  /** The state folded from the history plus the appended events. */
  readonly after: TaskState | null
}

const given = (history: ReadonlyArray<TaskEvent>) => ({
  when: (command: TaskCommand): Outcome => {
    const stored = store(history)
    const before = fold(stored)
    const decision = decide(before, command)
    const appended = decision._tag === "Accepted" ? decision.events : []
    const after = fold([...stored, ...store(appended, stored.length + 1)])
    return { before, decision, appended, after }
  }
})

const typesOf = (events: ReadonlyArray<TaskEvent>): ReadonlyArray<TaskEventType> => events.map((event) => event.type)

const rejectionOf = (decision: Decision): RejectionReason | undefined =>
  decision._tag === "Rejection" ? decision.reason : undefined

const single = <T extends TaskEventType>(outcome: Outcome, type: T): EventOf<T> => {
  const found = outcome.appended.filter((event): event is EventOf<T> => event.type === type)
  expect(found).toHaveLength(1)
  const [event] = found
  if (event === undefined) throw new Error(`no ${type} appended`)
  return event
}

// ---------------------------------------------------------------------------------------------
// Every state × every command
// ---------------------------------------------------------------------------------------------

/** Each state is a real history, and the time the command arrives (seconds from T0). */
const states = {
  absent: { history: [], now: 20 },
  PENDING: { history: [created()], now: 20 },
  "IN_PROGRESS (live lease)": { history: [created(), claimed(1, W1, CLAIMED_AT)], now: 20 },
  "IN_PROGRESS (expired lease)": { history: [created(), claimed(1, W1, CLAIMED_AT)], now: LEASE_END + 30 },
  COMPLETED: { history: [created(), claimed(1, W1, CLAIMED_AT), completed(W1, 15)], now: 20 },
  FAILED: { history: [created(), claimed(1, W1, CLAIMED_AT), failed(W1, 15)], now: 20 },
  DEAD_LETTERED: {
    history: [created({ maxAttempts: 1 }), claimed(1, W1, CLAIMED_AT), nacked(W1, 15), deadLettered(15)],
    now: 20
  },
  CANCELLED: { history: [created(), cancelled(5)], now: 20 }
} as const satisfies Record<string, { readonly history: ReadonlyArray<TaskEvent>; readonly now: number }>
type Given = keyof typeof states

type Then =
  | { readonly appends: ReadonlyArray<TaskEventType>; readonly status: TaskStatus }
  | { readonly rejects: RejectionReason }
const appends = (events: ReadonlyArray<TaskEventType>, status: TaskStatus): Then => ({ appends: events, status })
const rejects = (reason: RejectionReason): Then => ({ rejects: reason })

// prettier-ignore
const table: ReadonlyArray<readonly [Given, CommandType, Then]> = [
  ["absent", "CreateTask",    appends(["TaskCreated"], "PENDING")],
  ["absent", "ClaimTask",     rejects("not_found")],
  ["absent", "HeartbeatTask", rejects("not_found")],
  ["absent", "AbandonTask",   rejects("not_found")],
  ["absent", "NackTask",      rejects("not_found")],
  ["absent", "CompleteTask",  rejects("not_found")],
  ["absent", "FailTask",      rejects("not_found")],
  ["absent", "CancelTask",    rejects("not_found")],
  ["absent", "RequeueTask",   rejects("not_found")],
  ["absent", "PurgeTask",     rejects("not_found")],
  ["absent", "RecordWebhook", rejects("not_found")],

  ["PENDING", "CreateTask",    rejects("already_exists")],
  ["PENDING", "ClaimTask",     appends(["TaskClaimed"], "IN_PROGRESS")],
  ["PENDING", "HeartbeatTask", rejects("not_in_progress")],
  ["PENDING", "AbandonTask",   rejects("not_in_progress")],
  ["PENDING", "NackTask",      rejects("not_in_progress")],
  ["PENDING", "CompleteTask",  rejects("not_in_progress")],
  ["PENDING", "FailTask",      rejects("not_in_progress")],
  ["PENDING", "CancelTask",    appends(["TaskCancelled"], "CANCELLED")],
  ["PENDING", "RequeueTask",   rejects("not_dead_lettered")],
  ["PENDING", "PurgeTask",     rejects("not_dead_lettered")],
  ["PENDING", "RecordWebhook", rejects("no_webhook")],

  ["IN_PROGRESS (live lease)", "CreateTask",    rejects("already_exists")],
  ["IN_PROGRESS (live lease)", "ClaimTask",     rejects("leased")],
  ["IN_PROGRESS (live lease)", "HeartbeatTask", appends(["TaskHeartbeat"], "IN_PROGRESS")],
  ["IN_PROGRESS (live lease)", "AbandonTask",   appends(["TaskAbandoned"], "PENDING")],
  ["IN_PROGRESS (live lease)", "NackTask",      appends(["TaskNacked"], "PENDING")],
  ["IN_PROGRESS (live lease)", "CompleteTask",  appends(["TaskCompleted"], "COMPLETED")],
  ["IN_PROGRESS (live lease)", "FailTask",      appends(["TaskFailed"], "FAILED")],
  ["IN_PROGRESS (live lease)", "CancelTask",    appends(["TaskCancelled"], "CANCELLED")],
  ["IN_PROGRESS (live lease)", "RequeueTask",   rejects("not_dead_lettered")],
  ["IN_PROGRESS (live lease)", "PurgeTask",     rejects("not_dead_lettered")],
  ["IN_PROGRESS (live lease)", "RecordWebhook", rejects("no_webhook")],

  // Expiry is recorded lazily by the next claimer (DESIGN §3): until then the holder keeps the task.
  ["IN_PROGRESS (expired lease)", "CreateTask",    rejects("already_exists")],
  ["IN_PROGRESS (expired lease)", "ClaimTask",     appends(["TaskLeaseExpired", "TaskClaimed"], "IN_PROGRESS")],
  ["IN_PROGRESS (expired lease)", "HeartbeatTask", appends(["TaskHeartbeat"], "IN_PROGRESS")],
  ["IN_PROGRESS (expired lease)", "AbandonTask",   appends(["TaskAbandoned"], "PENDING")],
  ["IN_PROGRESS (expired lease)", "NackTask",      appends(["TaskNacked"], "PENDING")],
  ["IN_PROGRESS (expired lease)", "CompleteTask",  appends(["TaskCompleted"], "COMPLETED")],
  ["IN_PROGRESS (expired lease)", "FailTask",      appends(["TaskFailed"], "FAILED")],
  ["IN_PROGRESS (expired lease)", "CancelTask",    appends(["TaskCancelled"], "CANCELLED")],
  ["IN_PROGRESS (expired lease)", "RequeueTask",   rejects("not_dead_lettered")],
  ["IN_PROGRESS (expired lease)", "PurgeTask",     rejects("not_dead_lettered")],
  ["IN_PROGRESS (expired lease)", "RecordWebhook", rejects("no_webhook")],

  ["COMPLETED", "CreateTask",    rejects("already_exists")],
  ["COMPLETED", "ClaimTask",     rejects("not_claimable")],
  ["COMPLETED", "HeartbeatTask", rejects("terminal")],
  ["COMPLETED", "AbandonTask",   rejects("terminal")],
  ["COMPLETED", "NackTask",      rejects("terminal")],
  ["COMPLETED", "CompleteTask",  rejects("terminal")],
  ["COMPLETED", "FailTask",      rejects("terminal")],
  ["COMPLETED", "CancelTask",    rejects("terminal")],
  ["COMPLETED", "RequeueTask",   rejects("not_dead_lettered")],
  ["COMPLETED", "PurgeTask",     rejects("not_dead_lettered")],
  ["COMPLETED", "RecordWebhook", rejects("no_webhook")],

  ["FAILED", "CreateTask",    rejects("already_exists")],
  ["FAILED", "ClaimTask",     rejects("not_claimable")],
  ["FAILED", "HeartbeatTask", rejects("terminal")],
  ["FAILED", "AbandonTask",   rejects("terminal")],
  ["FAILED", "NackTask",      rejects("terminal")],
  ["FAILED", "CompleteTask",  rejects("terminal")],
  ["FAILED", "FailTask",      rejects("terminal")],
  ["FAILED", "CancelTask",    rejects("terminal")],
  ["FAILED", "RequeueTask",   rejects("not_dead_lettered")],
  ["FAILED", "PurgeTask",     rejects("not_dead_lettered")],
  ["FAILED", "RecordWebhook", rejects("no_webhook")],

  ["DEAD_LETTERED", "CreateTask",    rejects("already_exists")],
  ["DEAD_LETTERED", "ClaimTask",     rejects("not_claimable")],
  ["DEAD_LETTERED", "HeartbeatTask", rejects("terminal")],
  ["DEAD_LETTERED", "AbandonTask",   rejects("terminal")],
  ["DEAD_LETTERED", "NackTask",      rejects("terminal")],
  ["DEAD_LETTERED", "CompleteTask",  rejects("terminal")],
  ["DEAD_LETTERED", "FailTask",      rejects("terminal")],
  ["DEAD_LETTERED", "CancelTask",    rejects("terminal")],
  ["DEAD_LETTERED", "RequeueTask",   appends(["TaskRequeued"], "PENDING")],
  ["DEAD_LETTERED", "PurgeTask",     appends(["TaskPurged"], "DEAD_LETTERED")],
  ["DEAD_LETTERED", "RecordWebhook", rejects("no_webhook")],

  ["CANCELLED", "CreateTask",    rejects("already_exists")],
  ["CANCELLED", "ClaimTask",     rejects("not_claimable")],
  ["CANCELLED", "HeartbeatTask", rejects("terminal")],
  ["CANCELLED", "AbandonTask",   rejects("terminal")],
  ["CANCELLED", "NackTask",      rejects("terminal")],
  ["CANCELLED", "CompleteTask",  rejects("terminal")],
  ["CANCELLED", "FailTask",      rejects("terminal")],
  ["CANCELLED", "CancelTask",    rejects("terminal")],
  ["CANCELLED", "RequeueTask",   rejects("not_dead_lettered")],
  ["CANCELLED", "PurgeTask",     rejects("not_dead_lettered")],
  ["CANCELLED", "RecordWebhook", rejects("no_webhook")]
]

describe("decide, for every state and every command", () => {
  it("has exactly one row per (state, command) pair", () => {
    const pairs = table.map(([state, command]) => `${state} × ${command}`)
    expect(new Set(pairs).size).toBe(pairs.length)
    expect(pairs).toHaveLength(Object.keys(states).length * COMMAND_TYPES.length)
  })

  it("folds each state's history to the status it is named after", () => {
    const statusOf = (name: Given) => fold(store(states[name].history))?.status ?? null
    expect(Object.fromEntries(Object.keys(states).map((name) => [name, statusOf(name as Given)]))).toEqual({
      absent: null,
      PENDING: "PENDING",
      "IN_PROGRESS (live lease)": "IN_PROGRESS",
      "IN_PROGRESS (expired lease)": "IN_PROGRESS",
      COMPLETED: "COMPLETED",
      FAILED: "FAILED",
      DEAD_LETTERED: "DEAD_LETTERED",
      CANCELLED: "CANCELLED"
    })
  })

  it("settles a task exactly when the table refuses it every command but a webhook's record", () => {
    // What the webhook deliveries rely on to skip a read (projections/webhooks.ts): nothing but
    // RecordWebhook can follow a settled status. And every other ended status takes another command.
    const takesOthers = new Set(table.filter(([, command, then]) => command !== "RecordWebhook" && !("rejects" in then)).map(([state]) => state))
    const ended = ["COMPLETED", "FAILED", "DEAD_LETTERED", "CANCELLED"] as const
    expect(ended.filter((status) => !takesOthers.has(status))).toEqual([...SETTLED])
  })

  for (const [state, command, then] of table) {
    const { history, now } = states[state]
    if ("rejects" in then) {
      it(`${command} on a ${state} task is rejected as ${then.rejects} and appends nothing`, () => {
        const outcome = given(history).when(commands[command](now))
        expect(rejectionOf(outcome.decision)).toBe(then.rejects)
        expect(outcome.appended).toEqual([])
        expect(outcome.after).toEqual(outcome.before)
      })
    } else {
      it(`${command} on a ${state} task appends ${then.appends.join(", ")} and leaves it ${then.status}`, () => {
        const outcome = given(history).when(commands[command](now))
        expect(typesOf(outcome.appended)).toEqual(then.appends)
        expect(outcome.after?.status).toBe(then.status)
      })
    }
  }
})

// ---------------------------------------------------------------------------------------------
// Focused behaviours
// ---------------------------------------------------------------------------------------------

describe("decide: create", () => {
  it("records exactly the fields given on the command, at the command's time", () => {
    const outcome = given([]).when(commands.CreateTask(0))
    expect(outcome.appended).toEqual([
      {
        v: EVENT_SCHEMA_VERSION,
        type: "TaskCreated",
        taskId: TASK_ID,
        tenant: TENANT,
        at: iso(0),
        command: "resize",
        payload: { width: 64 },
        priority: 5,
        maxAttempts: 3
      }
    ])
    const event = single(outcome, "TaskCreated")
    expect(Object.keys(event)).not.toContain("webhook")
    expect(Object.keys(event)).not.toContain("runAt")
  })

  it("records the optional webhook, runAt, lease and idempotency key hash when given", () => {
    const outcome = given([]).when({
      ...commands.CreateTask(0),
      webhook: "https://example.com/hook",
      runAt: iso(600),
      leaseSeconds: 90,
      idempotencyKeyHash: "ab".repeat(32)
    })
    expect(single(outcome, "TaskCreated")).toMatchObject({
      webhook: "https://example.com/hook",
      runAt: iso(600),
      leaseSeconds: 90,
      idempotencyKeyHash: "ab".repeat(32)
    })
    expect(outcome.after).toMatchObject({ status: "PENDING", attempts: 0, hasIdempotencyKey: true, leaseSeconds: 90 })
  })
})

describe("decide: claim", () => {
  it("records the attempt, the claiming worker, the lease end and the lease handle", () => {
    const outcome = given([created()]).when(commands.ClaimTask(20))
    expect(single(outcome, "TaskClaimed")).toMatchObject({
      attempt: 1,
      workerId: W2,
      leaseUntil: iso(20 + LEASE),
      leaseHandle: "$JS.ACK.next",
      at: iso(20)
    })
    expect(outcome.after).toMatchObject({ status: "IN_PROGRESS", attempts: 1, workerId: W2, leaseUntil: iso(20 + LEASE) })
  })

  it("is rejected as leased while the lease is live, with retryAt at the lease end", () => {
    const outcome = given([created(), claimed(1, W1, CLAIMED_AT)]).when(commands.ClaimTask(LEASE_END - 1))
    expect(outcome.decision).toMatchObject({ _tag: "Rejection", reason: "leased", retryAt: at(LEASE_END) })
  })

  it("treats a lease that ends exactly now as expired", () => {
    const outcome = given([created(), claimed(1, W1, CLAIMED_AT)]).when(commands.ClaimTask(LEASE_END))
    expect(typesOf(outcome.appended)).toEqual(["TaskLeaseExpired", "TaskClaimed"])
  })

  it("records an expired lease against the previous holder and attempt before claiming the next attempt", () => {
    const outcome = given([created(), claimed(1, W1, CLAIMED_AT)]).when(commands.ClaimTask(100))
    expect(outcome.appended).toMatchObject([
      { type: "TaskLeaseExpired", workerId: W1, attempt: 1, at: iso(100) },
      { type: "TaskClaimed", workerId: W2, attempt: 2, leaseUntil: iso(100 + LEASE) }
    ])
    expect(outcome.after).toMatchObject({ status: "IN_PROGRESS", attempts: 2, workerId: W2 })
  })

  it("is rejected as not_due before runAt, with retryAt at runAt", () => {
    const outcome = given([created({ runAt: iso(3600) })]).when(commands.ClaimTask(20))
    expect(outcome.decision).toMatchObject({ _tag: "Rejection", reason: "not_due", retryAt: at(3600) })
    expect(outcome.appended).toEqual([])
  })

  it("claims a delayed task once runAt is reached", () => {
    const outcome = given([created({ runAt: iso(3600) })]).when(commands.ClaimTask(3600))
    expect(typesOf(outcome.appended)).toEqual(["TaskClaimed"])
  })

  it("reports a terminal task as not_claimable even when its runAt is still in the future", () => {
    const outcome = given([created({ runAt: iso(3600) }), cancelled(5)]).when(commands.ClaimTask(20))
    expect(rejectionOf(outcome.decision)).toBe("not_claimable")
  })

  it("dead-letters instead of claiming when the expired lease was the last attempt", () => {
    const outcome = given([created({ maxAttempts: 1 }), claimed(1, W1, CLAIMED_AT)]).when(commands.ClaimTask(100))
    expect(outcome.appended).toMatchObject([
      { type: "TaskLeaseExpired", workerId: W1, attempt: 1 },
      { type: "TaskDeadLettered", reason: "max_attempts" }
    ])
    expect(outcome.after).toMatchObject({ status: "DEAD_LETTERED", attempts: 1, error: "max_attempts", workerId: undefined })
  })

  it("dead-letters a PENDING task whose attempts already equal maxAttempts", () => {
    // A claimer that recorded the lease expiry and then crashed before its second append.
    const outcome = given([created({ maxAttempts: 2 }), claimed(1, W1, 10), nacked(W1, 15), claimed(2, W1, 20), leaseExpired(W1, 2, 90)]).when(
      commands.ClaimTask(100)
    )
    expect(outcome.before).toMatchObject({ status: "PENDING", attempts: 2, maxAttempts: 2 })
    expect(typesOf(outcome.appended)).toEqual(["TaskDeadLettered"])
    expect(outcome.after?.status).toBe("DEAD_LETTERED")
  })

  it("claims again from attempt 1 after a requeue from the dead-letter queue", () => {
    const history = [created({ maxAttempts: 1 }), claimed(1, W1, 10), nacked(W1, 15), deadLettered(15), requeued(30)]
    const outcome = given(history).when(commands.ClaimTask(40))
    expect(outcome.before).toMatchObject({ status: "PENDING", attempts: 0, error: undefined })
    expect(single(outcome, "TaskClaimed").attempt).toBe(1)
  })
})

describe("decide: dead-letter queue", () => {
  const deadHistory = [created({ maxAttempts: 1 }), claimed(1, W1, CLAIMED_AT), nacked(W1, 15), deadLettered(15)]

  it("purges a dead-lettered task, which stays DEAD_LETTERED but marked purged", () => {
    const outcome = given(deadHistory).when(commands.PurgeTask(20))
    expect(outcome.appended).toMatchObject([{ type: "TaskPurged", reason: "operator" }])
    expect(outcome.before?.purged).toBe(false)
    expect(outcome.after).toMatchObject({ status: "DEAD_LETTERED", purged: true })
  })

  it.each(["RequeueTask", "PurgeTask"] as const)("%s of a purged task is rejected as not_dead_lettered", (command) => {
    const outcome = given([...deadHistory, purged(20)]).when(commands[command](30))
    expect(rejectionOf(outcome.decision)).toBe("not_dead_lettered")
    expect(outcome.appended).toEqual([])
  })

  it("requeues a dead-lettered task with its attempts and error cleared", () => {
    const outcome = given(deadHistory).when(commands.RequeueTask(20))
    expect(outcome.before).toMatchObject({ attempts: 1, error: "max_attempts" })
    expect(outcome.after).toMatchObject({ status: "PENDING", attempts: 0, error: undefined, purged: false })
  })
})

const LEASE_COMMANDS = ["HeartbeatTask", "AbandonTask", "NackTask", "CompleteTask", "FailTask"] as const

describe("decide: lease holder checks", () => {
  const reclaimedBySameWorker = [created(), claimed(1, W1, 10), leaseExpired(W1, 1, 80), claimed(2, W1, 80)]

  it.each(LEASE_COMMANDS)("%s from another worker is rejected as lease_lost", (command) => {
    const outcome = given([created(), claimed(1, W1, CLAIMED_AT)]).when(commands[command](20, { workerId: W2 }))
    expect(rejectionOf(outcome.decision)).toBe("lease_lost")
    expect(outcome.appended).toEqual([])
  })

  it.each(LEASE_COMMANDS)("%s from the same worker holding an older attempt is rejected as lease_lost", (command) => {
    const outcome = given(reclaimedBySameWorker).when(commands[command](90, { workerId: W1, attempt: 1 }))
    expect(rejectionOf(outcome.decision)).toBe("lease_lost")
    expect(outcome.appended).toEqual([])
  })

  it.each(LEASE_COMMANDS)("%s from the same worker holding the current attempt is accepted", (command) => {
    const outcome = given(reclaimedBySameWorker).when(commands[command](90, { workerId: W1, attempt: 2 }))
    expect(outcome.decision._tag).toBe("Accepted")
  })

  it.each(LEASE_COMMANDS)("%s from the holding worker without an attempt is accepted", (command) => {
    const outcome = given(reclaimedBySameWorker).when(commands[command](90, { workerId: W1 }))
    expect(outcome.decision._tag).toBe("Accepted")
  })

  it.each(LEASE_COMMANDS)("%s from the worker whose expired lease was re-claimed by another is rejected as lease_lost", (command) => {
    const history = [created(), claimed(1, W1, CLAIMED_AT), leaseExpired(W1, 1, 80), claimed(2, W2, 80)]
    const outcome = given(history).when(commands[command](90, { workerId: W1, attempt: 1 }))
    expect(rejectionOf(outcome.decision)).toBe("lease_lost")
  })
})

describe("decide: heartbeat", () => {
  it("extends the lease to now plus extendSeconds, so a claim before then is rejected as leased", () => {
    const history = [created(), claimed(1, W1, CLAIMED_AT)]
    const outcome = given(history).when(commands.HeartbeatTask(60))
    expect(single(outcome, "TaskHeartbeat")).toMatchObject({ workerId: W1, leaseUntil: iso(60 + 120) })
    expect(outcome.after).toMatchObject({ status: "IN_PROGRESS", attempts: 1, leaseUntil: iso(180) })

    const claim = given([...history, heartbeat(W1, 60, 120)]).when(commands.ClaimTask(LEASE_END + 30))
    expect(claim.decision).toMatchObject({ reason: "leased", retryAt: at(180) })
  })
})

describe("decide: abandon", () => {
  it("gives the attempt back, so the next claim reuses its number", () => {
    const outcome = given([created(), claimed(1, W1, CLAIMED_AT)]).when(commands.AbandonTask(20))
    expect(single(outcome, "TaskAbandoned").workerId).toBe(W1)
    expect(outcome.before?.attempts).toBe(1)
    expect(outcome.after).toMatchObject({ status: "PENDING", attempts: 0, workerId: undefined, leaseUntil: undefined, leaseHandle: undefined })

    const next = given([created(), claimed(1, W1, CLAIMED_AT), abandoned(W1, 20)]).when(commands.ClaimTask(30))
    expect(single(next, "TaskClaimed").attempt).toBe(1)
  })

  it("does not dead-letter when the abandoned claim was the last attempt", () => {
    const history = [created({ maxAttempts: 1 }), claimed(1, W1, CLAIMED_AT), abandoned(W1, 20)]
    const outcome = given(history).when(commands.ClaimTask(30))
    expect(typesOf(outcome.appended)).toEqual(["TaskClaimed"])
  })
})

describe("decide: nack", () => {
  it("records the reason and delay and keeps the attempt consumed when attempts remain", () => {
    const outcome = given([created({ maxAttempts: 3 }), claimed(1, W1, CLAIMED_AT)]).when(commands.NackTask(20))
    expect(outcome.appended).toMatchObject([{ type: "TaskNacked", workerId: W1, reason: "busy", delaySeconds: 30 }])
    expect(outcome.after).toMatchObject({ status: "PENDING", attempts: 1, workerId: undefined })
  })

  it("dead-letters on the last attempt", () => {
    const history = [created({ maxAttempts: 2 }), claimed(1, W1, 10), nacked(W1, 15), claimed(2, W2, 20)]
    const outcome = given(history).when(commands.NackTask(30, { workerId: W2, attempt: 2 }))
    expect(outcome.appended).toMatchObject([
      { type: "TaskNacked", workerId: W2 },
      { type: "TaskDeadLettered", reason: "max_attempts" }
    ])
    expect(outcome.after).toMatchObject({ status: "DEAD_LETTERED", attempts: 2, error: "max_attempts" })
  })
})

describe("decide: results", () => {
  it("records the result on complete", () => {
    const outcome = given([created(), claimed(1, W1, CLAIMED_AT)]).when({ ...commands.CompleteTask(20), artifacts: ["a"] })
    expect(single(outcome, "TaskCompleted")).toMatchObject({ workerId: W1, result: { ok: true }, artifacts: ["a"] })
    expect(outcome.after).toMatchObject({ status: "COMPLETED", result: { ok: true }, artifacts: ["a"], error: undefined })
  })

  it("records the error on fail", () => {
    const outcome = given([created(), claimed(1, W1, CLAIMED_AT)]).when(commands.FailTask(20))
    expect(single(outcome, "TaskFailed")).toMatchObject({ workerId: W1, error: "corrupt input" })
    expect(outcome.after).toMatchObject({ status: "FAILED", error: "corrupt input" })
  })
})

// ---------------------------------------------------------------------------------------------
// evolve / fold
// ---------------------------------------------------------------------------------------------

/** One event of every type, in an order a log could hold them. */
const everyEventType: ReadonlyArray<TaskEvent> = [
  created({ webhook: "https://example.com/hook" }),
  claimed(1, W1, 10),
  heartbeat(W1, 20, 60),
  abandoned(W1, 25),
  claimed(1, W1, 30),
  leaseExpired(W1, 1, 100),
  claimed(2, W2, 100),
  nacked(W2, 110),
  claimed(3, W1, 120),
  failed(W1, 130),
  webhookFailed(131),
  webhookDelivered(132),
  deadLettered(140),
  purged(145),
  requeued(150),
  completed(W2, 160),
  cancelled(170),
  rejected(180)
]

const deepFreeze = <T>(value: T): T => {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const child of Object.values(value)) deepFreeze(child)
  }
  return value
}

describe("evolve and fold", () => {
  it("has one event of every type in the purity fixture", () => {
    expect(new Set(typesOf(everyEventType))).toEqual(new Set(EVENT_TYPES))
  })

  it("folds to null when the history has no TaskCreated", () => {
    expect(fold([])).toBeNull()
    expect(fold(store([claimed(1, W1, 10), completed(W1, 20)]))).toBeNull()
  })

  it.each(everyEventType.filter((event) => event.type !== "TaskCreated"))("leaves a missing task missing on $type", (event) => {
    expect(evolve(null, store([event])[0] ?? expect.unreachable())).toBeNull()
  })

  it("ignores a second TaskCreated: nothing happens, not even a version bump", () => {
    const [first, second] = store([created(), created({ command: "encode", priority: 9 })], 4)
    if (first === undefined || second === undefined) throw new Error("fixture")
    const state = evolve(null, first)
    expect(evolve(state, second)).toBe(state)
  })

  it("keeps the trace context of the create as the parent of every later transition", () => {
    const state = fold(store([created(), claimed(1, W1, 10)]))
    expect(state).toMatchObject({ traceParent: TRACE.traceparent, traceState: TRACE.tracestate })
  })

  it("tracks the seq of the last event applied as the version, with updatedAt at its time", () => {
    const history = store(everyEventType, 3, 7)
    const last = history.at(-1)
    const state = fold(history)
    expect(state?.version).toBe(last?.seq)
    expect(state?.version).toBe(3 + (everyEventType.length - 1) * 7)
    expect(state?.updatedAt).toBe(last?.event.at)
    expect(state?.createdAt).toBe(iso(0))
  })

  it.each(["WebhookDelivered", "WebhookFailed", "TaskRejected"] as const)(
    "on %s changes only the version and updatedAt, and webhookDelivered for a delivery",
    (type) => {
      const history = store([created(), claimed(1, W1, 10), completed(W1, 20)])
      const before = fold(history)
      const event = [webhookDelivered(30), webhookFailed(30), rejected(30)].find((candidate) => candidate.type === type)
      if (before === null || event === undefined) throw new Error("fixture")
      const after = evolve(before, { seq: 42, subject: SUBJECT, time: at(30), event, trace: undefined })
      expect(after).toEqual({ ...before, version: 42, updatedAt: iso(30), webhookDelivered: type === "WebhookDelivered" })
    }
  )

  it.each(everyEventType)("never mutates its (deep-frozen) inputs on $type", (event) => {
    const history = store(everyEventType)
    const index = everyEventType.indexOf(event)
    const state = deepFreeze(fold(history.slice(0, index)))
    const stored = deepFreeze(history[index] ?? expect.unreachable())
    const stateCopy = structuredClone(state)
    const storedCopy = structuredClone(stored)

    const next = evolve(state, stored)

    expect(state).toEqual(stateCopy)
    expect(stored).toEqual(storedCopy)
    expect(next).not.toBe(null)
    expect(next?.version).toBe(stored.seq)
  })

  it("folds a deep-frozen history to the same state as an unfrozen copy", () => {
    const history = store(everyEventType)
    const expected = fold(structuredClone(history))
    expect(fold(deepFreeze(history))).toEqual(expected)
    expect(expected).toMatchObject({
      status: "CANCELLED",
      attempts: 0,
      // Delivered before the requeue: the task's later end is a delivery of its own.
      webhookDelivered: false,
      purged: false,
      version: everyEventType.length
    })
  })

  it("makes a requeued task's next end a webhook delivery of its own", () => {
    const history = store([created({ webhook: "https://example.com/hook", maxAttempts: 1 }), claimed(1, W1, 10), failed(W1, 20), webhookDelivered(21)])
    const delivered = fold(history)
    expect(delivered?.webhookDelivered).toBe(true)
    const requeued = evolve(delivered, { seq: 5, subject: SUBJECT, time: at(30), event: { ...head("TaskRequeued", 30), reason: "operator" }, trace: undefined })
    expect(requeued).toMatchObject({ status: "PENDING", webhookDelivered: false })
  })
})

describe("webhook outcomes of a finished task with a webhook", () => {
  const withHook = [created({ webhook: "https://example.com/hook" }), claimed(1, W1, CLAIMED_AT), completed(W1, 15)]
  const record = (delivered: boolean, final = false): TaskCommand => ({ ...base(20), type: "RecordWebhook", attempt: 1, delivered, statusCode: delivered ? 204 : 500, error: delivered ? undefined : "status", final })

  it("records a failed attempt and leaves the webhook pending", () => {
    const outcome = given(withHook).when(record(false))
    expect(typesOf(outcome.appended)).toEqual(["WebhookFailed"])
    expect(outcome.after?.webhookDelivered).toBe(false)
  })

  it("records a delivery once, then refuses another", () => {
    const outcome = given(withHook).when(record(true))
    expect(typesOf(outcome.appended)).toEqual(["WebhookDelivered"])
    expect(outcome.after?.webhookDelivered).toBe(true)
    const again = given([...withHook, ...outcome.appended]).when(record(true))
    expect(rejectionOf(again.decision)).toBe("terminal")
  })

  it("refuses to record a webhook for a task still in progress", () => {
    const outcome = given(withHook.slice(0, 2)).when(record(true))
    expect(rejectionOf(outcome.decision)).toBe("no_webhook")
  })
})
