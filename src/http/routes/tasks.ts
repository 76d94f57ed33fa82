/**
 * Producer and read routes: create (202), batch create (per-item results), list tasks (from the
 * task-state read model), GET a task, GET its result with an optional long-poll. All tenant-scoped by construction: the tenant is the token's,
 * and a task id is looked up only on that tenant's subject, so another tenant's task is a 404.
 */
import { createTask, createTasks, type CreateTaskInput } from "../../tasks/create.js"
import { ErrorBody, badRequest } from "../errors.js"
import type { HttpBackend } from "../server.js"
import { BatchCreateJson, GetResultJson, TaskJson, TaskListJson } from "../responses.js"
import type { TaskStatus } from "../../domain/events.js"

const STATUSES: ReadonlyArray<TaskStatus> = ["PENDING", "IN_PROGRESS", "COMPLETED", "FAILED", "DEAD_LETTERED", "CANCELLED"]
import { awaitResult } from "../results.js"
import { route, type Route } from "../router.js"
import { BatchCreateBody, CreateTaskBody, MAX_RESULT_WAIT_SECONDS } from "../schemas.js"

const ERR = (description: string) => ({ description, schema: ErrorBody })
export const AUTH_ERRORS = { 401: ERR("no or invalid token"), 403: ERR("token lacks a scope or a valid tenant"), 429: ERR("rate limited"), 503: ERR("NATS unreachable") }

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
  if (!/^\d{1,9}$/.test(raw)) throw badRequest({ field: name, rule: "integer", message: `${name} must be a non-negative integer` })
  return Math.min(max, Number(raw))
}

export const taskRoutes = (backend: HttpBackend): ReadonlyArray<Route> => [
  route({
    method: "POST",
    path: "/v1/codeq/tasks",
    summary: "Create a task",
    access: { kind: "tenant" },
    body: CreateTaskBody,
    responses: { 202: { description: "the task, stored", schema: TaskJson }, 400: ERR("invalid request"), 413: ERR("body too large"), ...AUTH_ERRORS },
    handle: async ({ principal, body, trace }) => ({
      status: 202,
      body: await createTask(backend.repo, backend.limits, principal.tenant, createInput(body), trace)
    })
  }),
  route({
    method: "POST",
    path: "/v1/codeq/tasks/batch",
    summary: "Create up to 100 tasks; one result per item, in order",
    access: { kind: "tenant" },
    body: BatchCreateBody,
    responses: { 200: { description: "per-item task or error", schema: BatchCreateJson }, 400: ERR("invalid request"), 413: ERR("body too large"), ...AUTH_ERRORS },
    handle: async ({ principal, body, trace }) => {
      const results = await createTasks(backend.repo, backend.limits, principal.tenant, body.tasks.map(createInput), trace)
      return {
        status: 200,
        body: {
          results: results.map((r, i) =>
            r.ok ? { task: r.task } : { error: r.error.message, field: `tasks[${i}].${r.error.field}`, rule: r.error.rule }
          )
        }
      }
    }
  }),
  route({
    method: "GET",
    path: "/v1/codeq/tasks",
    summary: "List the caller's tenant's tasks from the read model, newest first",
    access: { kind: "tenant" },
    query: [
      { name: "status", type: "string", description: `one of ${STATUSES.join(", ")}` },
      { name: "command", type: "string", description: "only tasks of this command" },
      { name: "limit", type: "integer", description: "at most this many (1–1000, default 100)" }
    ],
    responses: { 200: { description: "the tasks", schema: TaskListJson }, 400: ERR("invalid status, command or limit"), ...AUTH_ERRORS },
    handle: async ({ principal, query }) => {
      const status = query.get("status") ?? undefined
      if (status !== undefined && !(STATUSES as ReadonlyArray<string>).includes(status))
        throw badRequest({ field: "status", rule: "enum", message: `status must be one of ${STATUSES.join(", ")}` })
      const limit = query.get("limit") === null ? 100 : intQuery(query, "limit", 1_000_000)
      const command = query.get("command") ?? undefined
      const tasks = await backend.tasks.list(principal.tenant, {
        limit,
        ...(status !== undefined ? { status: status as TaskStatus } : {}),
        ...(command !== undefined ? { command } : {})
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
    method: "GET",
    path: "/v1/codeq/tasks/:id/result",
    summary: "Get a task's result, optionally waiting for it",
    access: { kind: "tenant" },
    query: [{ name: "waitSeconds", type: "integer", description: `long-poll up to this long for the result (clamped to ${MAX_RESULT_WAIT_SECONDS})` }],
    responses: {
      200: { description: "the task and its result", schema: GetResultJson },
      400: ERR("invalid id or waitSeconds"),
      404: ERR("no such task, or no result (yet)"),
      ...AUTH_ERRORS
    },
    handle: async ({ principal, params, query, signal }) => {
      const wait = intQuery(query, "waitSeconds", MAX_RESULT_WAIT_SECONDS)
      const outcome = await awaitResult(backend, principal.tenant, params.id ?? "", wait * 1000, signal)
      if (outcome.result === undefined) return { status: 404, body: { error: "result not found" } }
      return { status: 200, body: { task: outcome.task, result: outcome.result } }
    }
  })
]
