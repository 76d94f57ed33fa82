/**
 * Worker routes: claim (long-poll), batch claim, heartbeat, abandon, nack, result, batch results.
 * The lease holder is the token's subject; every call settles through the lease handle the log
 * recorded, so any instance behind the load balancer serves any lease. A stale holder gets 409.
 */
import type { LeaseOutcome } from "../tasks/lifecycle.js"
import type { TaskView } from "../tasks/view.js"
import { claimableCommands, workerIdOf, type Principal } from "./auth.js"
import { ErrorBody, toHttpError } from "./errors.js"
import { AbandonJson, BatchClaimJson, BatchResultsJson, HeartbeatJson, NackJson, ResultRecordJson, TaskJson } from "./responses.js"
import { outcomeOfResult, resultRecordOf } from "./results.js"
import { route, type Route } from "./router.js"
import { MAX_CLAIM_WAIT_SECONDS, requestSchemas } from "./schemas.js"
import type { HttpBackend } from "./backend.js"
import { AUTH_ERRORS } from "./errors.js"

const ERR = (description: string) => ({ description, schema: ErrorBody })
const LEASE_ERRORS = { 400: ERR("invalid request"), 404: ERR("no such task in this tenant"), 409: ERR("lease lost or task not in progress"), ...AUTH_ERRORS }

const positive = (n: number | undefined) => (n === undefined || n === 0 ? undefined : n)

/** Claims one task, or undefined. A task claimed for a client that has gone is given back at once. */
const claimOne = async (backend: HttpBackend, principal: Principal, commands: ReadonlyArray<string>, leaseSeconds: number | undefined, waitSeconds: number, signal: AbortSignal): Promise<TaskView | undefined> => {
  const workerId = workerIdOf(principal)
  const claimed = await backend.tasks.claim(
    principal.tenant,
    commands,
    { workerId, waitSeconds: Math.min(MAX_CLAIM_WAIT_SECONDS, waitSeconds), ...(leaseSeconds !== undefined ? { leaseSeconds } : {}) },
    signal
  )
  if (claimed !== undefined && signal.aborted) {
    // Nobody will read this response: release the lease instead of letting it run out.
    await backend.tasks.settleLease(principal.tenant, claimed.task.id, { workerId, attempt: claimed.lease.attempt }, { type: "abandon" }).catch(() => undefined)
    return undefined
  }
  return claimed?.task
}

const settle = (backend: HttpBackend, principal: Principal, taskId: string, outcome: LeaseOutcome) =>
  backend.tasks.settleLease(principal.tenant, taskId, { workerId: workerIdOf(principal) }, outcome)

export const workerRoutes = (backend: HttpBackend): ReadonlyArray<Route> => {
  const { AbandonBody, BatchClaimBody, BatchResultsBody, ClaimBody, HeartbeatBody, NackBody, SubmitResultBody } = requestSchemas(backend.limits)
  return [
    route({
      method: "POST",
      path: "/v1/codeq/tasks/claim",
      summary: "Claim the next task of some commands (highest priority first), long-polling up to 30 s",
      access: { kind: "scope", scope: "codeq:claim" },
      body: ClaimBody,
      responses: { 200: { description: "the claimed task, with its persisted trace context", schema: TaskJson }, 204: { description: "nothing to claim" }, ...LEASE_ERRORS },
      handle: async ({ principal, body, signal }) => {
        const commands = claimableCommands(principal, body.commands)
        const task = await claimOne(backend, principal, commands, positive(body.leaseSeconds), body.waitSeconds ?? 0, signal)
        return task === undefined ? { status: 204 } : { status: 200, body: task }
      }
    }),
    route({
      method: "POST",
      path: "/v1/codeq/tasks/claim/batch",
      summary: "Claim up to `count` (≤ 10) tasks at once; waits only for the first",
      access: { kind: "scope", scope: "codeq:claim" },
      body: BatchClaimBody,
      responses: { 200: { description: "the claimed tasks", schema: BatchClaimJson }, 204: { description: "nothing to claim" }, ...LEASE_ERRORS },
      handle: async ({ principal, body, signal }) => {
        const commands = claimableCommands(principal, body.commands)
        const workerId = workerIdOf(principal)
        const leaseSeconds = positive(body.leaseSeconds)
        const claimed = await backend.tasks.claimMany(
          principal.tenant,
          commands,
          { workerId, waitSeconds: Math.min(MAX_CLAIM_WAIT_SECONDS, body.waitSeconds ?? 0), ...(leaseSeconds !== undefined ? { leaseSeconds } : {}) },
          body.count,
          signal
        )
        if (signal.aborted) {
          // Nobody will read this response: release the leases instead of letting them run out.
          await Promise.all(claimed.map((c) => backend.tasks.settleLease(principal.tenant, c.task.id, { workerId, attempt: c.lease.attempt }, { type: "abandon" }).catch(() => undefined)))
          return { status: 204 }
        }
        return claimed.length === 0 ? { status: 204 } : { status: 200, body: { tasks: claimed.map((c) => c.task) } }
      }
    }),
    route({
      method: "POST",
      path: "/v1/codeq/tasks/:id/heartbeat",
      summary: "Extend the caller's lease",
      access: { kind: "scope", scope: "codeq:heartbeat" },
      body: HeartbeatBody,
      responses: { 200: { description: "lease extended", schema: HeartbeatJson }, ...LEASE_ERRORS },
      handle: async ({ principal, params, body }) => {
        const task = await backend.tasks.heartbeat(principal.tenant, params.id ?? "", { workerId: workerIdOf(principal) }, positive(body.extendSeconds))
        return { status: 200, body: { ok: true, ...(task.leaseUntil !== undefined ? { leaseUntil: task.leaseUntil } : {}) } }
      }
    }),
    route({
      method: "POST",
      path: "/v1/codeq/tasks/:id/abandon",
      summary: "Give the task back at once without using an attempt",
      access: { kind: "scope", scope: "codeq:abandon" },
      body: AbandonBody,
      responses: { 200: { description: "requeued", schema: AbandonJson }, ...LEASE_ERRORS },
      handle: async ({ principal, params }) => {
        await settle(backend, principal, params.id ?? "", { type: "abandon" })
        return { status: 200, body: { status: "requeued" } }
      }
    }),
    route({
      method: "POST",
      path: "/v1/codeq/tasks/:id/nack",
      summary: "Give the task back for a retry after a delay (the backoff policy's when 0 or absent); dead-letters it on its last attempt",
      access: { kind: "scope", scope: "codeq:nack" },
      body: NackBody,
      responses: { 200: { description: "requeued or dead-lettered", schema: NackJson }, ...LEASE_ERRORS },
      handle: async ({ principal, params, body }) => {
        const delaySeconds = positive(body.delaySeconds)
        const settled = await settle(backend, principal, params.id ?? "", { type: "nack", reason: body.reason ?? "nacked", ...(delaySeconds !== undefined ? { delaySeconds } : {}) })
        return { status: 200, body: { status: settled.disposition === "dlq" ? "dlq" : "requeued", delaySeconds: Math.round(settled.nakDelaySeconds ?? 0) } }
      }
    }),
    route({
      method: "POST",
      path: "/v1/codeq/tasks/:id/result",
      summary: "Submit the result (COMPLETED with result, or FAILED with error)",
      access: { kind: "scope", scope: "codeq:result" },
      body: SubmitResultBody,
      responses: { 200: { description: "the stored result", schema: ResultRecordJson }, ...LEASE_ERRORS },
      handle: async ({ principal, params, body }) => {
        const settled = await settle(backend, principal, params.id ?? "", outcomeOfResult(body, backend.limits))
        return { status: 200, body: resultRecordOf(settled.state) }
      }
    }),
    route({
      method: "POST",
      path: "/v1/codeq/tasks/batch/results",
      summary: "Submit up to 100 results; one outcome per item, in order",
      access: { kind: "scope", scope: "codeq:result" },
      body: BatchResultsBody,
      responses: { 200: { description: "per-item result or error", schema: BatchResultsJson }, 400: ERR("invalid request"), ...AUTH_ERRORS },
      handle: async ({ principal, body }) => {
        const results = await Promise.all(
          body.results.map(async ({ taskId, workerId: _ignored, ...item }, i) => {
            try {
              const settled = await settle(backend, principal, taskId, outcomeOfResult(item, backend.limits, `results[${i}].`))
              return { taskId, result: resultRecordOf(settled.state) }
            } catch (error) {
              const http = toHttpError(error)
              if (http.status >= 500) throw error
              return { taskId, error: http.body.error, code: http.status, ...(http.body.reason !== undefined ? { reason: http.body.reason } : {}) }
            }
          })
        )
        return { status: 200, body: { results } }
      }
    })
  ]
}
