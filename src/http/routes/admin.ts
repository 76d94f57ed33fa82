/**
 * Admin routes (scope codeq:admin), each within the admin's own tenant: queue statistics (codeQ's
 * `/admin/queues` and `/admin/queues/:command`) and the dead-letter queue — list, requeue, purge.
 *
 * Queue statistics come from JetStream alone (no read model yet): the claim stream's per-subject
 * message counts give each lane's depth, each lane consumer's ack-pending count what is handed out
 * and unsettled, and the dead-letter index the DLQ. A claim message stays in the work queue until
 * its task is settled, so depth = ready + in progress.
 */
import type { JetStreamManager } from "nats"
import { claimConsumerName } from "../../claims/consumers.js"
import { checkCommand } from "../../domain/validation.js"
import { claimSubjects, claimsStream } from "../../../streams/definitions.js"
import { ValidationError } from "../../tasks/errors.js"
import { ErrorBody, HttpError, badRequest } from "../errors.js"
import type { HttpBackend } from "../server.js"
import { DeadLettersJson, PurgedJson, QueueStatsJson, QueuesJson, TaskJson } from "../responses.js"
import { route, type Route } from "../router.js"
import { AUTH_ERRORS } from "./tasks.js"

export interface QueueStats {
  readonly command: string
  /** Claim messages not yet handed to any worker (a not-yet-due task counts until first looked at). */
  readonly ready: number
  /** Always 0 for now: telling delayed from leased needs the task-state read model. */
  readonly delayed: number
  /** Handed out and unsettled: leased, or waiting out a nack or schedule delay. */
  readonly inProgress: number
  readonly dlq: number
  /** Claim messages per priority lane. */
  readonly lanes: Readonly<Record<string, number>>
}

interface LaneCount {
  readonly command: string
  readonly lane: number
  readonly depth: number
  readonly handedOut: number
}

const handedOut = async (jsm: JetStreamManager, stream: string, consumer: string): Promise<number> => {
  try {
    return (await jsm.consumers.info(stream, consumer)).num_ack_pending
  } catch (error) {
    // No consumer yet (nobody claimed this lane) or removed when idle: nothing handed out.
    if (/not found/i.test(String(error))) return 0
    throw error
  }
}

/** Depth and handed-out count of every non-empty lane of `command` (or of every command). */
const laneCounts = async (backend: HttpBackend, tenant: string, command?: string): Promise<ReadonlyArray<LaneCount>> => {
  const jsm = await backend.nc.jetstreamManager({ checkAPI: false })
  const stream = claimsStream(backend.naming)
  const info = await jsm.streams.info(stream, { subjects_filter: claimSubjects(backend.naming, tenant, command) })
  const subjects = Object.entries(info.state.subjects ?? {}).filter(([, depth]) => depth > 0)
  return Promise.all(
    subjects.map(async ([subject, depth]) => {
      const parts = subject.split(".")
      const lane = Number(parts[parts.length - 1])
      const laneCommand = parts[parts.length - 2] ?? ""
      const pending = await handedOut(jsm, stream, claimConsumerName(tenant, laneCommand, lane))
      return { command: laneCommand, lane, depth, handedOut: Math.min(depth, pending) }
    })
  )
}

/** Statistics of one command's queue (codeQ's QueueStats plus the lanes). */
export const queueStats = async (backend: HttpBackend, tenant: string, command: string): Promise<QueueStats> => {
  const [lanes, dead] = await Promise.all([laneCounts(backend, tenant, command), backend.tasks.deadLetters(tenant, command)])
  return {
    command,
    ready: lanes.reduce((sum, l) => sum + l.depth - l.handedOut, 0),
    delayed: 0,
    inProgress: lanes.reduce((sum, l) => sum + l.handedOut, 0),
    dlq: dead.length,
    lanes: Object.fromEntries(lanes.map((l) => [String(l.lane), l.depth]))
  }
}

/**
 * Every queue of the tenant in codeQ's flat shape: `codeq:q:<command>:<tenant>:pending:<lane>`
 * (not yet handed out), `…:inprog` and `…:dlq`, each a count. Zero counts are left out.
 */
export const allQueues = async (backend: HttpBackend, tenant: string): Promise<Readonly<Record<string, number>>> => {
  const [lanes, dead] = await Promise.all([laneCounts(backend, tenant), backend.tasks.deadLetters(tenant)])
  const out: Record<string, number> = {}
  const add = (key: string, n: number) => {
    if (n > 0) out[key] = (out[key] ?? 0) + n
  }
  for (const l of lanes) {
    add(`codeq:q:${l.command}:${tenant}:pending:${l.lane}`, l.depth - l.handedOut)
    add(`codeq:q:${l.command}:${tenant}:inprog`, l.handedOut)
  }
  for (const entry of dead) add(`codeq:q:${entry.command}:${tenant}:dlq`, 1)
  return out
}

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
    summary: "Depth of every queue of the tenant (codeQ's flat map)",
    access: ADMIN,
    responses: { 200: { description: "counts by queue key", schema: QueuesJson }, ...AUTH_ERRORS },
    handle: async ({ principal }) => ({ status: 200, body: await allQueues(backend, principal.tenant) })
  }),
  route({
    method: "GET",
    path: "/v1/codeq/admin/queues/:command",
    summary: "Statistics of one command's queue",
    access: ADMIN,
    responses: { 200: { description: "queue statistics", schema: QueueStatsJson }, 400: ERR("invalid command"), ...AUTH_ERRORS },
    handle: async ({ principal, params }) => ({
      status: 200,
      body: await queueStats(backend, principal.tenant, commandParam(params.command, "command"))
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
