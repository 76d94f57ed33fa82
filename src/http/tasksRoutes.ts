/**
 * Producer and read routes: create (202), batch create (per-item results), cancel, list tasks
 * (from the task-state read model, also by trace id), GET a task, find a task by its idempotency
 * key, GET its result with an optional long-poll. All
 * tenant-scoped by construction: the tenant is the token's, and a task id is looked up only on
 * that tenant's subject, so another tenant's task is a 404.
 */
import type { Context } from "@opentelemetry/api"
import { Either } from "effect"
import { createTask, createTasks, type CreateItemResult, type CreateTaskInput } from "../tasks/create.js"
import type { TaskStatus } from "../domain/events.js"
import { idempotentTaskId } from "../domain/ids.js"
import { checkIdempotencyKey, type ValidationIssue } from "../domain/validation.js"
import { decodeEither } from "./decode.js"
import { AUTH_ERRORS, HttpError, badRequest, errorResponse } from "./errors.js"
import type { HttpBackend } from "./backend.js"
import { BatchCreateJson, GetResultJson, TaskJson, TaskListJson } from "./responses.js"
import { awaitResult } from "./results.js"
import { route, type Route } from "./router.js"
import { MAX_RESULT_WAIT_SECONDS, requestSchemas, type CreateTaskBody } from "./schemas.js"

const STATUSES: ReadonlyArray<TaskStatus> = ["PENDING", "IN_PROGRESS", "COMPLETED", "FAILED", "DEAD_LETTERED", "CANCELLED"]

/** Most tasks one `GET /v1/codeq/tasks` lists (the library's bound). */
const MAX_LIST_LIMIT = 1000

/** A W3C trace id: 32 lowercase hex digits, not all zero. */
const TRACE_ID = /^(?!0{32})[0-9a-f]{32}$/

const ERR = errorResponse

/**
 * codeQ's request as the library's input. codeQ treats zero and empty values as "not given"
 * (Go clients omit them), so they fall back to the defaults here too.
 */
export const createInput = (body: CreateTaskBody): CreateTaskInput => {
  const given = <T>(value: T | undefined, empty: T): value is T => value !== undefined && value !== empty
  return {
    command: body.command,
    ...(body.payload !== undefined ? { payload: body.payload } : {}),
    ...(body.priority !== undefined ? { priority: body.priority } : {}),
    ...(given(body.webhook, "") ? { webhook: body.webhook } : {}),
    ...(given(body.maxAttempts, 0) ? { maxAttempts: body.maxAttempts } : {}),
    ...(given(body.idempotencyKey, "") ? { idempotencyKey: body.idempotencyKey } : {}),
    ...(given(body.runAt, "") ? { runAt: body.runAt } : {}),
    ...(given(body.delaySeconds, 0) ? { delaySeconds: body.delaySeconds } : {}),
    ...(given(body.leaseSeconds, 0) ? { leaseSeconds: body.leaseSeconds } : {})
  }
}

/** A non-negative integer query parameter, 0 when absent, clamped to `max`; 400 otherwise. */
export const intQuery = (query: URLSearchParams, name: string, max: number): number => {
  const raw = query.get(name)
  if (raw === null || raw === "") return 0
  if (!/^\d+$/.test(raw)) throw badRequest({ field: name, rule: "integer", message: `${name} must be a non-negative integer` })
  return Math.min(max, Number(raw))
}

type BatchItem = { readonly task: unknown } | { readonly error: string; readonly field: string; readonly rule: string }

const itemError = (issue: ValidationIssue): BatchItem => ({ error: issue.message, field: issue.field, rule: issue.rule })

/**
 * One answer per item, in order: items that break a schema rule are answered with it and never
 * reach the library; the others are created together, each answered with its task or the rule
 * the library refused it by.
 */
const createBatch = async (backend: HttpBackend, tenant: string, items: ReadonlyArray<unknown>, trace: Context): Promise<ReadonlyArray<BatchItem>> => {
  const { CreateTaskBody } = requestSchemas(backend.limits)
  const decoded = items.map((item, i) => decodeEither(CreateTaskBody, item, ["tasks", i]))
  const valid = decoded.flatMap((d, i) => (Either.isRight(d) ? [{ i, input: createInput(d.right) }] : []))
  const created = await createTasks(backend.repo, backend.limits, tenant, valid.map((v) => v.input), trace)
  const byIndex = new Map<number, CreateItemResult>(valid.map((v, k) => [v.i, created[k] as CreateItemResult]))
  return decoded.map((d, i) => {
    if (Either.isLeft(d)) return itemError(d.left)
    const result = byIndex.get(i)
    if (result === undefined) throw new Error(`batch create lost item ${i}`)
    return result.ok ? { task: result.task } : itemError({ ...result.error, field: `tasks[${i}].${result.error.field}` })
  })
}

export const taskRoutes = (backend: HttpBackend): ReadonlyArray<Route> => {
  const schemas = requestSchemas(backend.limits)
  return [
    route({
      method: "POST",
      path: "/v1/codeq/tasks",
      summary: "Create a task",
      access: { kind: "tenant" },
      body: schemas.CreateTaskBody,
      responses: { 202: { description: "the task, stored", schema: TaskJson }, 400: ERR("invalid request"), 413: ERR("body too large"), ...AUTH_ERRORS },
      handle: async ({ principal, body, trace }) => ({
        status: 202,
        body: await createTask(backend.repo, backend.limits, principal.tenant, createInput(body), trace)
      })
    }),
    route({
      method: "POST",
      path: "/v1/codeq/tasks/batch",
      summary: "Create up to 100 tasks; one result per item, in order: the task, or the field and rule an invalid item broke",
      access: { kind: "tenant" },
      body: schemas.BatchCreateEnvelope,
      documentedBody: schemas.BatchCreateBody,
      responses: {
        200: { description: "per-item task or error (valid items are created even when others are not)", schema: BatchCreateJson },
        400: ERR("the body itself is malformed: not an object, no tasks array, or not 1 to 100 items"),
        413: ERR("body too large"),
        ...AUTH_ERRORS
      },
      handle: async ({ principal, body, trace }) => ({ status: 200, body: { results: await createBatch(backend, principal.tenant, body.tasks, trace) } })
    }),
    route({
      method: "POST",
      path: "/v1/codeq/tasks/:id/cancel",
      summary: "Cancel a task that has not ended; a claim in progress is released, and its worker's next call gets 409",
      access: { kind: "producer" },
      body: schemas.CancelBody,
      responses: {
        200: { description: "the cancelled task", schema: TaskJson },
        400: ERR("invalid id or reason"),
        404: ERR("no such task in this tenant"),
        409: ERR("the task has already ended (reason terminal)"),
        ...AUTH_ERRORS
      },
      handle: async ({ principal, params, body }) => ({
        status: 200,
        body: await backend.tasks.cancel(principal.tenant, params.id ?? "", body.reason ?? "cancelled")
      })
    }),
    route({
      method: "GET",
      path: "/v1/codeq/tasks",
      summary: "List the caller's tenant's tasks from the read model, newest first",
      access: { kind: "tenant" },
      query: [
        { name: "status", type: "string", enum: STATUSES, description: "only tasks in this state" },
        { name: "command", type: "string", description: "only tasks of this command" },
        { name: "traceId", type: "string", description: "only tasks of this trace (32 lowercase hex digits): the trace id of the create's traceparent" },
        { name: "limit", type: "integer", minimum: 1, maximum: MAX_LIST_LIMIT, description: `at most this many (1–${MAX_LIST_LIMIT}, default 100)` }
      ],
      responses: { 200: { description: "the tasks", schema: TaskListJson }, 400: ERR("invalid status, command, traceId or limit"), ...AUTH_ERRORS },
      handle: async ({ principal, query }) => {
        const status = query.get("status") ?? undefined
        if (status !== undefined && !(STATUSES as ReadonlyArray<string>).includes(status))
          throw badRequest({ field: "status", rule: "enum", message: `status must be one of ${STATUSES.join(", ")}` })
        const limit = query.get("limit") === null ? 100 : intQuery(query, "limit", Number.MAX_SAFE_INTEGER)
        const command = query.get("command") ?? undefined
        const traceId = query.get("traceId") ?? undefined
        if (traceId !== undefined && !TRACE_ID.test(traceId))
          throw badRequest({ field: "traceId", rule: "pattern", message: "traceId must be 32 lowercase hex digits, not all zero" })
        const tasks = await backend.tasks.list(principal.tenant, {
          limit,
          ...(status !== undefined ? { status: status as TaskStatus } : {}),
          ...(command !== undefined ? { command } : {}),
          ...(traceId !== undefined ? { traceId } : {})
        })
        return { status: 200, body: { tasks, count: tasks.length } }
      }
    }),
    route({
      method: "GET",
      path: "/v1/codeq/tasks/:id",
      summary: "Get a task of the caller's tenant",
      access: { kind: "tenant" },
      responses: { 200: { description: "the task", schema: TaskJson }, 400: ERR("invalid id"), 404: ERR("no such task in this tenant"), ...AUTH_ERRORS },
      handle: async ({ principal, params }) => ({ status: 200, body: await backend.tasks.get(principal.tenant, params.id ?? "") })
    }),
    route({
      method: "POST",
      path: "/v1/codeq/tasks/lookup",
      summary: "Find the caller's tenant's task created with an idempotency key (sent in the body, so it stays out of URLs and logs)",
      access: { kind: "tenant" },
      body: schemas.LookupBody,
      responses: { 200: { description: "the task", schema: TaskJson }, 400: ERR("invalid key"), 404: ERR("no task with this key in this tenant"), ...AUTH_ERRORS },
      // The key names the task id (a UUIDv5 of tenant and key): no index, and no other tenant's task.
      handle: async ({ principal, body }) => {
        const issue = checkIdempotencyKey(body.idempotencyKey)
        if (issue !== undefined) throw badRequest(issue)
        return { status: 200, body: await backend.tasks.get(principal.tenant, idempotentTaskId(principal.tenant, body.idempotencyKey)) }
      }
    }),
    route({
      method: "GET",
      path: "/v1/codeq/tasks/:id/result",
      summary: "Get a task's result, optionally waiting for it; a task that ended without one is answered at once",
      access: { kind: "tenant" },
      query: [
        { name: "waitSeconds", type: "integer", minimum: 0, description: `long-poll up to this long for the result (clamped to ${MAX_RESULT_WAIT_SECONDS})` }
      ],
      responses: {
        200: { description: "the task and its result: COMPLETED, or FAILED with its error", schema: GetResultJson },
        400: ERR("invalid id or waitSeconds"),
        404: ERR("no such task, or no result yet (PENDING or IN_PROGRESS when the wait ended)"),
        409: ERR("the task ended without a result and never will have one as it stands: reason dead_lettered or cancelled"),
        ...AUTH_ERRORS
      },
      handle: async ({ principal, params, query, signal }) => {
        const wait = intQuery(query, "waitSeconds", MAX_RESULT_WAIT_SECONDS)
        const outcome = await awaitResult(backend, principal.tenant, params.id ?? "", wait * 1000, signal)
        if (outcome.result !== undefined) return { status: 200, body: { task: outcome.task, result: outcome.result } }
        const status = outcome.task.status
        if (status === "DEAD_LETTERED" || status === "CANCELLED")
          throw new HttpError({ status: 409, body: { error: `task ${outcome.task.id} ended ${status} without a result`, reason: status.toLowerCase() } })
        // codeQ's answer while the task may still produce a result (PENDING or IN_PROGRESS).
        return { status: 404, body: { error: "result not found" } }
      }
    })
  ]
}
