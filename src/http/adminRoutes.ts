/**
 * Admin routes (scope codeq:admin), each within the admin's own tenant: queue statistics (codeQ's
 * `/admin/queues` and `/admin/queues/:command`) and the dead-letter queue — list, requeue, purge.
 *
 * Queue statistics come from the task-state read model (`TaskOperations.queues`): every task of
 * the tenant counted once by its state, so a task waiting for its `runAt` is delayed, not ready
 * and not in progress. The projections' leader writes what it coalesced first (`readModelWritten`):
 * they count what the log held when asked, unless no leader answers within 2 s.
 */
import { checkCommand } from "../domain/validation.js"
import { ValidationError } from "../tasks/errors.js"
import { ErrorBody, HttpError, badRequest } from "./errors.js"
import type { HttpBackend } from "./backend.js"
import { CommandQueueJson, DeadLettersJson, PurgedJson, QueueOverviewJson, TaskJson } from "./responses.js"
import { route, type Route } from "./router.js"
import { AUTH_ERRORS } from "./errors.js"

const ERR = (description: string) => ({ description, schema: ErrorBody })
const ADMIN = { kind: "admin" } as const

const commandParam = (value: string | undefined, field: string): string => {
  const issue = checkCommand(value, field)
  if (issue !== undefined) throw badRequest(issue)
  return value ?? ""
}

export const adminRoutes = (backend: HttpBackend): ReadonlyArray<Route> => [
  route({
    method: "GET",
    path: "/v1/codeq/admin/queues",
    summary: "Every queue of the tenant: per command and priority lane, tasks ready, delayed and in progress; dead letters; totals",
    access: ADMIN,
    responses: { 200: { description: "the tenant's queues", schema: QueueOverviewJson }, ...AUTH_ERRORS },
    handle: async ({ principal }) => ({ status: 200, body: await backend.tasks.queues(principal.tenant) })
  }),
  route({
    method: "GET",
    path: "/v1/codeq/admin/queues/:command",
    summary: "Statistics of one command's queue",
    access: ADMIN,
    responses: { 200: { description: "the command's queue (all zero when it has no task)", schema: CommandQueueJson }, 400: ERR("invalid command"), ...AUTH_ERRORS },
    handle: async ({ principal, params }) => ({
      status: 200,
      body: await backend.tasks.queue(principal.tenant, commandParam(params.command, "command"))
    })
  }),
  route({
    method: "GET",
    path: "/v1/codeq/admin/dlq",
    summary: "Dead-lettered tasks of the tenant, oldest first, optionally of one command",
    access: ADMIN,
    query: [{ name: "command", type: "string", description: "only this command's dead letters" }],
    responses: { 200: { description: "the dead letters", schema: DeadLettersJson }, 400: ERR("invalid command"), ...AUTH_ERRORS },
    handle: async ({ principal, query }) => {
      const command = query.get("command")
      const items = await backend.tasks.deadLetters(principal.tenant, command === null ? undefined : commandParam(command, "command"))
      return { status: 200, body: { items, count: items.length } }
    }
  }),
  route({
    method: "POST",
    path: "/v1/codeq/admin/dlq/:id/requeue",
    summary: "Put a dead-lettered task back in its queue (attempts reset, same trace)",
    access: ADMIN,
    responses: {
      200: { description: "the requeued task", schema: TaskJson },
      400: ERR("invalid id"),
      404: ERR("no such task in this tenant"),
      409: ERR("the task is not dead-lettered"),
      ...AUTH_ERRORS
    },
    handle: async ({ principal, params }) => ({ status: 200, body: await backend.tasks.requeue(principal.tenant, params.id ?? "") })
  }),
  route({
    method: "DELETE",
    path: "/v1/codeq/admin/dlq/:id",
    summary: "Remove a dead-lettered task from the queue for good",
    access: ADMIN,
    responses: {
      200: { description: "purged", schema: PurgedJson },
      400: ERR("invalid id"),
      404: ERR("no such task in this tenant"),
      409: ERR("the task is not in the dead-letter queue"),
      ...AUTH_ERRORS
    },
    handle: async ({ principal, params }) => {
      const taskId = params.id ?? ""
      await backend.tasks.purge(principal.tenant, taskId).catch((error: unknown) => {
        // The library reports "not in the queue" as a ValidationError; for HTTP it is a conflict.
        if (error instanceof ValidationError && error.rule === "not_dead_lettered")
          throw new HttpError({ status: 409, body: { error: error.message, reason: error.rule } })
        throw error
      })
      return { status: 200, body: { taskId, status: "purged" } }
    }
  })
]
