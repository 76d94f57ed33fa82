/**
 * Creating tasks: input validation (every rule names its field), idempotency keys mapped to
 * deterministic ids, and the append under expected sequence 0. A repeated key returns the task
 * that exists; a broken rule throws ValidationError before anything is appended.
 */
import type { Context } from "@opentelemetry/api"
import type { CreateTask } from "../domain/decide.js"
import { hashIdempotencyKey, idempotentTaskId, newTaskId } from "../domain/ids.js"
import {
  checkCommand,
  checkIdempotencyKey,
  checkIntRange,
  checkNotAfter,
  checkNumberRange,
  checkPayload,
  checkTenant,
  checkTimestamp,
  checkWebhook,
  firstIssue
} from "../domain/validation.js"
import { ValidationError } from "./errors.js"
import type { TaskLimits } from "./limits.js"
import type { TaskRepository } from "./repository.js"
import { toView, type TaskView } from "./view.js"

/** What a producer asks for. Only `command` is required. */
export interface CreateTaskInput {
  readonly command: string
  readonly payload?: unknown
  /** 0 (lowest, default) to 9 (highest). */
  readonly priority?: number
  /** Called with the result when the task ends (http or https). */
  readonly webhook?: string
  /** Deliveries before the task is dead-lettered. */
  readonly maxAttempts?: number
  /** Not delivered before this ISO 8601 instant. Wins over `delaySeconds`. */
  readonly runAt?: string
  /** Not delivered before this many seconds from now. */
  readonly delaySeconds?: number
  /** Lease granted to each claim unless the claim asks for another. */
  readonly leaseSeconds?: number
  /** Creates with the same key under one tenant return the same task. */
  readonly idempotencyKey?: string
}

export type CreateItemResult =
  | { readonly ok: true; readonly task: TaskView }
  | { readonly ok: false; readonly error: ValidationError }

const KNOWN_FIELDS = new Set([
  "command",
  "payload",
  "priority",
  "webhook",
  "maxAttempts",
  "runAt",
  "delaySeconds",
  "leaseSeconds",
  "idempotencyKey"
])

/** Validates a create and turns it into the domain command (minus time). */
export const validateCreate = (
  tenant: string,
  input: CreateTaskInput,
  limits: TaskLimits
): { readonly taskId: string; readonly command: (now: Date) => CreateTask } => {
  const fail = (issue: { field: string; rule: string; message: string }): never => {
    throw new ValidationError(issue)
  }
  if (typeof input !== "object" || input === null) fail({ field: "body", rule: "object", message: "a task must be an object" })
  const unknownField = Object.keys(input).find((key) => !KNOWN_FIELDS.has(key))
  // An empty key names no field: the task object itself is at fault.
  if (unknownField !== undefined) fail({ field: unknownField === "" ? "body" : unknownField, rule: "unknown", message: `unknown field ${unknownField === "" ? '"" (an empty key)' : unknownField}` })
  const issue = firstIssue(
    checkTenant(tenant),
    checkCommand(input.command),
    input.priority === undefined ? undefined : checkIntRange(input.priority, "priority", 0, 9),
    input.webhook === undefined ? undefined : checkWebhook(input.webhook),
    input.maxAttempts === undefined ? undefined : checkIntRange(input.maxAttempts, "maxAttempts", 1, limits.maxMaxAttempts),
    input.runAt === undefined ? undefined : checkTimestamp(input.runAt, "runAt") ?? checkNotAfter(input.runAt, "runAt", limits.maxDelaySeconds),
    input.delaySeconds === undefined ? undefined : checkNumberRange(input.delaySeconds, "delaySeconds", 0, limits.maxDelaySeconds),
    input.leaseSeconds === undefined ? undefined : checkIntRange(input.leaseSeconds, "leaseSeconds", 1, limits.maxLeaseSeconds),
    input.idempotencyKey === undefined ? undefined : checkIdempotencyKey(input.idempotencyKey)
  )
  if (issue !== undefined) fail(issue)
  const payload = checkPayload(input.payload, limits.maxPayloadBytes)
  if ("field" in payload) fail(payload)
  const key = input.idempotencyKey
  const taskId = key === undefined ? newTaskId() : idempotentTaskId(tenant, key)
  const keyHash = key === undefined ? undefined : hashIdempotencyKey(key)
  const runAt = input.runAt !== undefined ? new Date(input.runAt).toISOString() : undefined
  const command = (now: Date): CreateTask => ({
    type: "CreateTask",
    taskId,
    tenant,
    now,
    command: input.command,
    payload: input.payload ?? null,
    priority: input.priority ?? 0,
    webhook: input.webhook,
    maxAttempts: input.maxAttempts ?? limits.defaultMaxAttempts,
    runAt: runAt ?? (input.delaySeconds ? new Date(now.getTime() + input.delaySeconds * 1000).toISOString() : undefined),
    leaseSeconds: input.leaseSeconds,
    idempotencyKeyHash: keyHash
  })
  return { taskId, command }
}

/** Validates and appends one create; returns the new task, or the existing one for a repeated key. */
export const createTask = async (
  repo: TaskRepository,
  limits: TaskLimits,
  tenant: string,
  input: CreateTaskInput,
  parent?: Context
): Promise<TaskView> => {
  const { taskId, command } = validateCreate(tenant, input, limits)
  const outcome = await repo.apply(tenant, taskId, command, {
    known: { state: null, version: 0 },
    ...(parent !== undefined ? { parent } : {})
  })
  const state = outcome.snapshot.state
  if (state === null) throw new Error(`create of ${taskId} ended without a task: ${outcome.ok ? "" : outcome.rejection.message}`)
  return toView(state)
}

/**
 * Creates of one `createTasks` call in flight at once, by default. Each create waiting for its ack
 * holds its event, its message and its promises: with a whole batch of 1,000 in flight, the young
 * generation's collections copied and promoted all of them, and a producer spent a third of its
 * time collecting. 64 keep the appends pipelined (a new create starts as each is answered) and
 * cut its collecting to a third.
 */
export const DEFAULT_CREATE_IN_FLIGHT = 64
/** The most a caller may ask for: the publisher's own in-flight limit. */
export const MAX_CREATE_IN_FLIGHT = 4096

/**
 * Creates many tasks, at most `maxInFlight` at once, a new one starting as each is answered; one
 * result per input, in order. A broken rule is that input's result; any other failure rejects the
 * call, and the inputs not yet started are not created.
 */
export const createTasks = async (
  repo: TaskRepository,
  limits: TaskLimits,
  tenant: string,
  inputs: ReadonlyArray<CreateTaskInput>,
  parent?: Context,
  maxInFlight: number = DEFAULT_CREATE_IN_FLIGHT
): Promise<ReadonlyArray<CreateItemResult>> => {
  const issue = checkIntRange(maxInFlight, "maxInFlight", 1, MAX_CREATE_IN_FLIGHT)
  if (issue !== undefined) throw new ValidationError(issue)
  const results = new Array<CreateItemResult>(inputs.length)
  let next = 0
  let failed = false
  const lane = async (): Promise<void> => {
    while (next < inputs.length && !failed) {
      const index = next++
      try {
        results[index] = { ok: true, task: await createTask(repo, limits, tenant, inputs[index] as CreateTaskInput, parent) }
      } catch (error) {
        if (!(error instanceof ValidationError)) {
          failed = true
          throw error
        }
        results[index] = { ok: false, error }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(maxInFlight, inputs.length) }, lane))
  return results
}
