/**
 * Response bodies of the HTTP API as Effect Schemas, for the OpenAPI document. The task JSON is
 * codeQ's (DESIGN §5) plus codeq's extra states (DEAD_LETTERED, CANCELLED) and result fields.
 */
import { Schema } from "effect"

const Iso = Schema.String.annotations({ description: "RFC 3339 instant" })

export const TaskJson = Schema.Struct({
  id: Schema.String,
  command: Schema.String,
  payload: Schema.optional(Schema.Unknown),
  priority: Schema.Number,
  webhook: Schema.optional(Schema.String),
  traceParent: Schema.optional(Schema.String.annotations({ description: "W3C traceparent of the create span, persisted with the task" })),
  traceState: Schema.optional(Schema.String),
  status: Schema.Literal("PENDING", "IN_PROGRESS", "COMPLETED", "FAILED", "DEAD_LETTERED", "CANCELLED"),
  workerId: Schema.optional(Schema.String),
  leaseUntil: Schema.optional(Iso),
  attempts: Schema.Number,
  maxAttempts: Schema.Number,
  runAt: Schema.optional(Iso),
  result: Schema.optional(Schema.Unknown),
  error: Schema.optional(Schema.String),
  artifacts: Schema.optional(Schema.Array(Schema.Unknown)),
  tenantId: Schema.String,
  createdAt: Iso,
  updatedAt: Iso
}).annotations({ identifier: "Task" })

/** `GET /v1/codeq/tasks`: a page of the tenant's tasks. */
export const TaskListJson = Schema.Struct({ tasks: Schema.Array(TaskJson), count: Schema.Number })

export const ArtifactOut = Schema.Struct({
  name: Schema.String,
  url: Schema.optional(Schema.String),
  contentType: Schema.optional(Schema.String),
  contentBase64: Schema.optional(Schema.String)
}).annotations({ identifier: "ArtifactOut" })

export const ResultRecordJson = Schema.Struct({
  taskId: Schema.String,
  status: Schema.Literal("COMPLETED", "FAILED"),
  result: Schema.optional(Schema.Unknown),
  error: Schema.optional(Schema.String),
  artifacts: Schema.optional(Schema.Array(ArtifactOut)),
  completedAt: Iso
}).annotations({ identifier: "ResultRecord" })

export const GetResultJson = Schema.Struct({ task: TaskJson, result: ResultRecordJson }).annotations({ identifier: "TaskResult" })

export const BatchCreateJson = Schema.Struct({
  results: Schema.Array(
    Schema.Struct({
      task: Schema.optional(TaskJson),
      error: Schema.optional(Schema.String),
      field: Schema.optional(Schema.String),
      rule: Schema.optional(Schema.String)
    })
  )
}).annotations({ identifier: "BatchCreateResponse" })

export const BatchClaimJson = Schema.Struct({ tasks: Schema.Array(TaskJson) }).annotations({ identifier: "BatchClaimResponse" })

export const HeartbeatJson = Schema.Struct({ ok: Schema.Literal(true), leaseUntil: Schema.optional(Iso) }).annotations({
  identifier: "HeartbeatResponse"
})

export const AbandonJson = Schema.Struct({ status: Schema.Literal("requeued") }).annotations({ identifier: "AbandonResponse" })

export const NackJson = Schema.Struct({
  status: Schema.Literal("requeued", "dlq"),
  delaySeconds: Schema.Number
}).annotations({ identifier: "NackResponse" })

export const BatchResultsJson = Schema.Struct({
  results: Schema.Array(
    Schema.Struct({
      taskId: Schema.String,
      result: Schema.optional(ResultRecordJson),
      error: Schema.optional(Schema.String),
      code: Schema.optional(Schema.Number.annotations({ description: "the HTTP status this item would have had alone" })),
      reason: Schema.optional(Schema.String)
    })
  )
}).annotations({ identifier: "BatchResultsResponse" })

const LaneCountsFields = {
  ready: Schema.Number.annotations({ description: "PENDING and due: the next claims take them" }),
  delayed: Schema.Number.annotations({ description: "PENDING with runAt (or the create's delaySeconds) still ahead" }),
  inProgress: Schema.Number.annotations({ description: "IN_PROGRESS: leased to a worker" })
}

export const LaneCountsJson = Schema.Struct(LaneCountsFields).annotations({ identifier: "LaneCounts" })

export const CommandQueueJson = Schema.Struct({
  command: Schema.String,
  ...LaneCountsFields,
  lanes: Schema.Record({ key: Schema.String, value: LaneCountsJson }).annotations({
    description: "per priority lane, \"0\" (lowest) to \"9\" (highest); only lanes that hold a task"
  }),
  deadLettered: Schema.Number.annotations({ description: "dead-lettered and not purged" })
}).annotations({
  identifier: "CommandQueue",
  description: "One command's queue, counted from the task-state read model, written up to what the log held when asked (unless no projections leader answers within 2 s)"
})

export const QueueOverviewJson = Schema.Struct({
  commands: Schema.Array(CommandQueueJson).annotations({ description: "commands with any ready, delayed, in-progress or dead-lettered task, by name" }),
  totals: Schema.Struct({ ...LaneCountsFields, deadLettered: Schema.Number }).annotations({ identifier: "QueueTotals" })
}).annotations({ identifier: "QueueOverview" })

export const DeadLetterJson = Schema.Struct({
  taskId: Schema.String,
  tenant: Schema.String,
  command: Schema.String,
  reason: Schema.String,
  attempts: Schema.Number,
  deadLetteredAt: Iso
}).annotations({ identifier: "DeadLetter" })

export const DeadLettersJson = Schema.Struct({ items: Schema.Array(DeadLetterJson), count: Schema.Number }).annotations({
  identifier: "DeadLetterList"
})

export const PurgedJson = Schema.Struct({ taskId: Schema.String, status: Schema.Literal("purged") }).annotations({ identifier: "PurgeResponse" })

export const HealthJson = Schema.Struct({
  status: Schema.String,
  error: Schema.optional(Schema.String)
}).annotations({ identifier: "Health" })
