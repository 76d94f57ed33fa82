/**
 * Request bodies of the HTTP API as Effect Schemas: they validate every request (unknown fields
 * are refused) and generate the OpenAPI document, so the two cannot drift. Shapes are codeQ's
 * (internal/controllers, pkg/domain). Bounds that come from configuration (maxAttempts, lease and
 * delay ceilings, commands per claim) are built from the server's `TaskLimits`, so the document
 * states the ranges the library enforces; `requestSchemas(limits)` builds them once per limits.
 * codeQ reads 0 as "not given" for the numeric fields that have a default, so 0 is in range there.
 */
import { Schema } from "effect"
import { COMMAND_PATTERN, MAX_ERROR_LENGTH, MAX_REASON_LENGTH } from "../domain/validation.js"
import { rule } from "./decode.js"
import { DEFAULT_LIMITS, type TaskLimits } from "../tasks/limits.js"

const Integer = Schema.Number.pipe(Schema.int(rule("integer", "an integer")))
const intRange = (min: number, max: number) => Integer.pipe(Schema.between(min, max, rule("range", `an integer from ${min} to ${max}`)))
const numberRange = (min: number, max: number) => Schema.Number.pipe(Schema.between(min, max, rule("range", `a number from ${min} to ${max}`)))
const nonNegative = Integer.pipe(Schema.nonNegative(rule("range", "an integer of at least 0")))
const text = (max: number) => Schema.String.pipe(Schema.maxLength(max, rule("length", `a string of at most ${max} characters`)))

export const Command = Schema.String.pipe(
  Schema.pattern(COMMAND_PATTERN, rule("pattern", `a command matching ${COMMAND_PATTERN.source}`))
).annotations({ identifier: "Command" })

export const MAX_BATCH_CREATE = 100
export const MAX_BATCH_CLAIM = 10
export const MAX_BATCH_RESULTS = 100
/** codeQ caps claim long-polls at 30 s and result long-polls at 60 s; larger values are clamped. */
export const MAX_CLAIM_WAIT_SECONDS = 30
export const MAX_RESULT_WAIT_SECONDS = 60

const batchOf = <A, I>(item: Schema.Schema<A, I>, max: number) =>
  Schema.Array(item).pipe(
    Schema.minItems(1, rule("min_items", "a non-empty array")),
    Schema.maxItems(max, rule("max_items", `an array of at most ${max} items`))
  )

const kib = (bytes: number) => (bytes % 1024 === 0 ? `${bytes / 1024} KiB` : `${bytes} bytes`)

const build = (limits: TaskLimits) => {
  const CreateTaskBody = Schema.Struct({
    command: Command,
    payload: Schema.optional(Schema.Unknown.annotations({ description: `any JSON value, at most ${kib(limits.maxPayloadBytes)}` })),
    priority: Schema.optional(intRange(0, 9).annotations({ description: "0 (default, lowest) to 9 (highest)" })),
    webhook: Schema.optional(text(2048).annotations({ description: "http(s) URL called with the result; empty means none" })),
    maxAttempts: Schema.optional(
      intRange(0, limits.maxMaxAttempts).annotations({
        description: `deliveries before dead-lettering, 1 to ${limits.maxMaxAttempts}; 0 or absent means the default (${limits.defaultMaxAttempts})`
      })
    ),
    idempotencyKey: Schema.optional(text(256).annotations({ description: "creates with the same key (per tenant) return the same task; empty means none" })),
    runAt: Schema.optional(
      Schema.String.annotations({
        description: `RFC 3339 instant before which the task is not handed out, at most ${limits.maxDelaySeconds} s ahead; wins over delaySeconds`
      })
    ),
    delaySeconds: Schema.optional(numberRange(0, limits.maxDelaySeconds).annotations({ description: "not handed out before this many seconds from now; 0 means at once" })),
    leaseSeconds: Schema.optional(
      intRange(0, limits.maxLeaseSeconds).annotations({ description: "lease granted to each claim unless the claim names one; 0 or absent means the default" })
    )
  }).annotations({ identifier: "CreateTaskRequest" })

  /** What the document shows for a batch create: every item a CreateTaskRequest. */
  const BatchCreateBody = Schema.Struct({ tasks: batchOf(CreateTaskBody, MAX_BATCH_CREATE) }).annotations({ identifier: "BatchCreateRequest" })

  /**
   * What a batch create is decoded with: the envelope alone. Each item is then decoded with
   * CreateTaskBody on its own, so one bad item is one per-item error, not a 400 for the batch.
   */
  const BatchCreateEnvelope = Schema.Struct({ tasks: batchOf(Schema.Unknown, MAX_BATCH_CREATE) })

  const claimFields = {
    commands: Schema.optional(
      Schema.Array(Command)
        .pipe(Schema.maxItems(limits.maxClaimCommands, rule("max_items", `an array of at most ${limits.maxClaimCommands} commands`)))
        .annotations({ description: `commands to take work from (at most ${limits.maxClaimCommands}); absent means every command the token's eventTypes allow` })
    ),
    leaseSeconds: Schema.optional(
      intRange(0, limits.maxLeaseSeconds).annotations({ description: "lease of this claim; 0 or absent means the task's or the default" })
    ),
    waitSeconds: Schema.optional(nonNegative.annotations({ description: `long-poll up to this long for a task (clamped to ${MAX_CLAIM_WAIT_SECONDS})` }))
  }

  const ClaimBody = Schema.Struct(claimFields).annotations({ identifier: "ClaimRequest" })

  const BatchClaimBody = Schema.Struct({
    ...claimFields,
    count: intRange(1, MAX_BATCH_CLAIM).annotations({ description: `how many tasks to claim, 1 to ${MAX_BATCH_CLAIM}` })
  }).annotations({ identifier: "BatchClaimRequest" })

  const HeartbeatBody = Schema.Struct({
    extendSeconds: Schema.optional(
      intRange(0, limits.maxLeaseSeconds).annotations({ description: "new lease from now; 0 or absent means the default lease" })
    )
  }).annotations({ identifier: "HeartbeatRequest" })

  const AbandonBody = Schema.Struct({}).annotations({ identifier: "AbandonRequest" })

  const NackBody = Schema.Struct({
    delaySeconds: Schema.optional(
      intRange(0, limits.maxDelaySeconds).annotations({ description: "redelivery delay; 0 or absent means the backoff policy's" })
    ),
    reason: Schema.optional(text(MAX_REASON_LENGTH))
  }).annotations({ identifier: "NackRequest" })

  const CancelBody = Schema.Struct({
    reason: Schema.optional(text(MAX_REASON_LENGTH).annotations({ description: "why, recorded on the TaskCancelled event; default \"cancelled\"" }))
  }).annotations({ identifier: "CancelRequest" })

  const LookupBody = Schema.Struct({
    idempotencyKey: Schema.String.pipe(
      Schema.minLength(1, rule("length", "a non-empty string")),
      Schema.maxLength(256, rule("length", "a string of at most 256 characters"))
    ).annotations({ description: "the key the task was created with; it is hashed into the task id, never stored, logged or echoed" })
  }).annotations({ identifier: "LookupRequest" })

  const ArtifactIn = Schema.Struct({
    name: Schema.String.pipe(
      Schema.minLength(1, rule("length", "a non-empty string")),
      Schema.maxLength(256, rule("length", "a string of at most 256 characters"))
    ),
    url: Schema.optional(text(2048)),
    contentBase64: Schema.optional(Schema.String),
    contentType: Schema.optional(text(256))
  }).annotations({ identifier: "Artifact" })

  const resultFields = {
    status: Schema.Literal("COMPLETED", "FAILED"),
    result: Schema.optional(Schema.Unknown.annotations({ description: "required when status is COMPLETED" })),
    error: Schema.optional(text(MAX_ERROR_LENGTH).annotations({ description: "required when status is FAILED" })),
    artifacts: Schema.optional(Schema.Array(ArtifactIn).pipe(Schema.maxItems(100, rule("max_items", "an array of at most 100 items")))),
    workerId: Schema.optional(Schema.String.annotations({ description: "ignored: the worker is the token's subject" }))
  }

  const SubmitResultBody = Schema.Struct(resultFields).annotations({ identifier: "SubmitResultRequest" })

  const BatchResultsBody = Schema.Struct({
    results: batchOf(Schema.Struct({ taskId: Schema.String, ...resultFields }).annotations({ identifier: "BatchResultItem" }), MAX_BATCH_RESULTS)
  }).annotations({ identifier: "BatchResultsRequest" })

  return {
    CreateTaskBody,
    BatchCreateBody,
    BatchCreateEnvelope,
    ClaimBody,
    BatchClaimBody,
    HeartbeatBody,
    AbandonBody,
    NackBody,
    CancelBody,
    LookupBody,
    ArtifactIn,
    SubmitResultBody,
    BatchResultsBody
  } as const
}

export type RequestSchemas = ReturnType<typeof build>

const built = new WeakMap<TaskLimits, RequestSchemas>()

/** The request schemas for a server with these limits (built once per limits object). */
export const requestSchemas = (limits: TaskLimits): RequestSchemas => {
  let schemas = built.get(limits)
  if (schemas === undefined) {
    schemas = build(limits)
    built.set(limits, schemas)
  }
  return schemas
}

/** The schemas of a server with the default limits. */
export const {
  CreateTaskBody,
  BatchCreateBody,
  ClaimBody,
  BatchClaimBody,
  HeartbeatBody,
  AbandonBody,
  NackBody,
  CancelBody,
  ArtifactIn,
  SubmitResultBody,
  BatchResultsBody
} = requestSchemas(DEFAULT_LIMITS)
export type CreateTaskBody = typeof CreateTaskBody.Type
export type ArtifactIn = typeof ArtifactIn.Type
export type SubmitResultBody = typeof SubmitResultBody.Type
