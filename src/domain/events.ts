/**
 * The task's events (the log's vocabulary), its state, and the pure `evolve` that folds one into
 * the other. Every event body is JSON with a schema version `v` and its `type`, which is also the
 * `Codeq-Event` header. No runtime, NATS or OpenTelemetry imports here.
 */
import { Schema } from "effect"

/** Current version of every event body this code writes. Readers accept this version. */
export const EVENT_SCHEMA_VERSION = 1 as const

const Iso = Schema.String
const Int = Schema.Number.pipe(Schema.int())

const base = <T extends string>(type: T) => ({
  v: Schema.Literal(EVENT_SCHEMA_VERSION),
  type: Schema.Literal(type),
  taskId: Schema.String,
  tenant: Schema.String,
  /** When the transition was decided (ISO 8601). */
  at: Iso
})

export const TaskCreated = Schema.Struct({
  ...base("TaskCreated"),
  command: Schema.String,
  payload: Schema.Unknown,
  priority: Int,
  webhook: Schema.optional(Schema.String),
  maxAttempts: Int,
  runAt: Schema.optional(Iso),
  leaseSeconds: Schema.optional(Int),
  /** SHA-256 of the idempotency key (never the key itself). */
  idempotencyKeyHash: Schema.optional(Schema.String)
})

export const TaskClaimed = Schema.Struct({
  ...base("TaskClaimed"),
  attempt: Int,
  workerId: Schema.String,
  leaseUntil: Iso,
  /** The claim message's ack subject: any broker instance can ack, nak or extend through it. */
  leaseHandle: Schema.String
})

export const TaskHeartbeat = Schema.Struct({
  ...base("TaskHeartbeat"),
  workerId: Schema.String,
  leaseUntil: Iso
})

export const TaskAbandoned = Schema.Struct({ ...base("TaskAbandoned"), workerId: Schema.String })

export const TaskNacked = Schema.Struct({
  ...base("TaskNacked"),
  workerId: Schema.String,
  reason: Schema.String,
  delaySeconds: Schema.Number
})

export const TaskLeaseExpired = Schema.Struct({
  ...base("TaskLeaseExpired"),
  workerId: Schema.String,
  attempt: Int
})

export const TaskCompleted = Schema.Struct({
  ...base("TaskCompleted"),
  workerId: Schema.String,
  result: Schema.optional(Schema.Unknown),
  artifacts: Schema.optional(Schema.Array(Schema.Unknown))
})

export const TaskFailed = Schema.Struct({
  ...base("TaskFailed"),
  workerId: Schema.String,
  error: Schema.String,
  result: Schema.optional(Schema.Unknown),
  artifacts: Schema.optional(Schema.Array(Schema.Unknown))
})

export const TaskDeadLettered = Schema.Struct({ ...base("TaskDeadLettered"), reason: Schema.String })
export const TaskRequeued = Schema.Struct({ ...base("TaskRequeued"), reason: Schema.String })
export const TaskCancelled = Schema.Struct({ ...base("TaskCancelled"), reason: Schema.String })
/** An operator removed a dead-lettered task from the dead-letter queue for good. */
export const TaskPurged = Schema.Struct({ ...base("TaskPurged"), reason: Schema.String })

export const WebhookDelivered = Schema.Struct({
  ...base("WebhookDelivered"),
  attempt: Int,
  statusCode: Int
})

export const WebhookFailed = Schema.Struct({
  ...base("WebhookFailed"),
  attempt: Int,
  statusCode: Schema.optional(Int),
  /** Short failure class (timeout, refused, status) — never the URL. */
  error: Schema.String,
  final: Schema.Boolean
})

export const TaskRejected = Schema.Struct({
  ...base("TaskRejected"),
  field: Schema.String,
  rule: Schema.String
})

export const TaskEvent = Schema.Union(
  TaskCreated,
  TaskClaimed,
  TaskHeartbeat,
  TaskAbandoned,
  TaskNacked,
  TaskLeaseExpired,
  TaskCompleted,
  TaskFailed,
  TaskDeadLettered,
  TaskRequeued,
  TaskCancelled,
  TaskPurged,
  WebhookDelivered,
  WebhookFailed,
  TaskRejected
)
export type TaskEvent = typeof TaskEvent.Type
export type TaskEventType = TaskEvent["type"]
export type EventOf<T extends TaskEventType> = Extract<TaskEvent, { type: T }>

/** Every event type name, for filters and validation of the `Codeq-Event` header. */
export const EVENT_TYPES: ReadonlyArray<TaskEventType> = TaskEvent.members.map(
  (member) => member.fields.type.literals[0]
)

/** The trace context recorded on an event by the span that wrote it (DESIGN §2). */
export interface EventTrace {
  readonly traceparent: string
  readonly tracestate: string | undefined
  /** Parent span id of the writing span (hex), undefined for a root span. */
  readonly parentSpanId: string | undefined
  /** Start of the writing span, unix epoch nanoseconds as a decimal string. */
  readonly spanStart: string | undefined
  /** End of the writing span (`Codeq-Span-End`), unix epoch nanoseconds; absent on older events. */
  readonly spanEnd?: string
  /** W3C baggage of the create's context (TaskCreated only), for the webhook. */
  readonly baggage?: string
}

/** An event as read back from the log. */
export interface StoredEvent<E extends TaskEvent = TaskEvent> {
  readonly seq: number
  readonly subject: string
  /** Log timestamp (the writing span's end). */
  readonly time: Date
  readonly event: E
  readonly trace: EventTrace | undefined
  /** The task's previous event sequence this one was appended after (0 for a create), when recorded. */
  readonly prevSeq?: number | undefined
  /** Bytes of the event's body in the log, when read from it (what the read model sizes its writes by). */
  readonly bodyBytes?: number
}

export type TaskStatus = "PENDING" | "IN_PROGRESS" | "COMPLETED" | "FAILED" | "DEAD_LETTERED" | "CANCELLED"

/** A task as the log says it is now. */
export interface TaskState {
  readonly id: string
  readonly tenant: string
  readonly command: string
  readonly payload: unknown
  readonly priority: number
  readonly webhook: string | undefined
  readonly maxAttempts: number
  readonly runAt: string | undefined
  readonly leaseSeconds: number | undefined
  readonly hasIdempotencyKey: boolean
  readonly status: TaskStatus
  /** Deliveries so far (abandon does not count). */
  readonly attempts: number
  readonly workerId: string | undefined
  readonly leaseUntil: string | undefined
  readonly leaseHandle: string | undefined
  readonly result: unknown
  readonly error: string | undefined
  readonly artifacts: ReadonlyArray<unknown> | undefined
  readonly createdAt: string
  readonly updatedAt: string
  /** Trace context persisted at create: the parent of every later transition's span. */
  readonly traceParent: string | undefined
  readonly traceState: string | undefined
  /** W3C baggage received with the create, sent again on the webhook. */
  readonly baggage?: string
  /** Sequence of the last event applied: the expected sequence of the next append. */
  readonly version: number
  /** Sequence of the TaskCreated: the task's place in creation order. */
  readonly createdSeq: number
  readonly webhookDelivered: boolean
  /** Removed from the dead-letter queue by an operator. */
  readonly purged: boolean
}

export const TERMINAL: ReadonlySet<TaskStatus> = new Set(["COMPLETED", "FAILED", "DEAD_LETTERED", "CANCELLED"])

const released = { workerId: undefined, leaseUntil: undefined, leaseHandle: undefined }

/** Folds one stored event into the state. Pure; unknown transitions leave the state as it was. */
export const evolve = (state: TaskState | null, stored: StoredEvent): TaskState | null => {
  const e = stored.event
  const touch = { version: stored.seq, updatedAt: e.at }
  if (e.type === "TaskCreated") {
    if (state !== null) return state
    return {
      id: e.taskId,
      tenant: e.tenant,
      command: e.command,
      payload: e.payload,
      priority: e.priority,
      webhook: e.webhook,
      maxAttempts: e.maxAttempts,
      runAt: e.runAt,
      leaseSeconds: e.leaseSeconds,
      hasIdempotencyKey: e.idempotencyKeyHash !== undefined,
      status: "PENDING",
      attempts: 0,
      ...released,
      result: undefined,
      error: undefined,
      artifacts: undefined,
      createdAt: e.at,
      traceParent: stored.trace?.traceparent,
      traceState: stored.trace?.tracestate,
      ...(stored.trace?.baggage !== undefined ? { baggage: stored.trace.baggage } : {}),
      webhookDelivered: false,
      purged: false,
      createdSeq: stored.seq,
      ...touch
    }
  }
  if (state === null) return null
  switch (e.type) {
    case "TaskClaimed":
      return { ...state, ...touch, status: "IN_PROGRESS", attempts: e.attempt, workerId: e.workerId, leaseUntil: e.leaseUntil, leaseHandle: e.leaseHandle }
    case "TaskHeartbeat":
      return { ...state, ...touch, leaseUntil: e.leaseUntil }
    case "TaskAbandoned":
      return { ...state, ...touch, ...released, status: "PENDING", attempts: Math.max(0, state.attempts - 1) }
    case "TaskNacked":
    case "TaskLeaseExpired":
      return { ...state, ...touch, ...released, status: "PENDING" }
    case "TaskCompleted":
      return { ...state, ...touch, status: "COMPLETED", leaseHandle: undefined, result: e.result, artifacts: e.artifacts, error: undefined }
    case "TaskFailed":
      return { ...state, ...touch, status: "FAILED", leaseHandle: undefined, result: e.result, artifacts: e.artifacts, error: e.error }
    case "TaskDeadLettered":
      return { ...state, ...touch, ...released, status: "DEAD_LETTERED", error: state.error ?? e.reason }
    case "TaskRequeued":
      // A requeued task ends again later: that end is a delivery of its own.
      return { ...state, ...touch, ...released, status: "PENDING", attempts: 0, error: undefined, purged: false, webhookDelivered: false }
    case "TaskCancelled":
      return { ...state, ...touch, ...released, status: "CANCELLED" }
    case "TaskPurged":
      return { ...state, ...touch, purged: true }
    case "WebhookDelivered":
      return { ...state, ...touch, webhookDelivered: true }
    case "WebhookFailed":
    case "TaskRejected":
      return { ...state, ...touch }
    default: {
      const unreachable: never = e
      return unreachable
    }
  }
}

/** Folds a task's whole history; null when it has no TaskCreated. */
export const fold = (history: ReadonlyArray<StoredEvent>): TaskState | null =>
  history.reduce<TaskState | null>(evolve, null)
