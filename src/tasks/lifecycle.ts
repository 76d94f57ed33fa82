/**
 * The worker side of a task, shared by the SDK and the HTTP API: claim a delivered claim message
 * (appending TaskClaimed under the sequence just read), keep the lease with heartbeats, then settle
 * it with complete, fail, nack or abandon. The log decides first; the claim message is answered
 * only after the event is stored, through the handle recorded in the log, so any broker can do it.
 *
 * The lease timer lives in JetStream. Leases are per claim but the ack wait is per consumer, so a
 * claim (and every heartbeat) answers its claim message with a nak delayed to the lease's end:
 * the server redelivers it exactly when the lease runs out, to whichever worker pulls next, which
 * then records TaskLeaseExpired. A nak through any earlier handle of the message reschedules it
 * (it is keyed by stream sequence), and a redelivery that finds the lease extended is nak'ed again
 * to the new end. Nothing is kept in memory, so leases survive broker restarts without affinity.
 */
import type { Context } from "@opentelemetry/api"
import type { LeaseRef } from "../domain/decide.js"
import { backoffSeconds, type BackoffSettings } from "../domain/backoff.js"
import type { TaskState } from "../domain/events.js"
import type { ClaimDelivery } from "../eventlog/claims/source.js"
import { createdOfClaim } from "../eventlog/claims/message.js"
import { evolve } from "../domain/events.js"
import type { DeliveryAnswer } from "../eventlog/acks.js"
import { checkPayload, MAX_ERROR_LENGTH, MAX_REASON_LENGTH, type ValidationIssue } from "../domain/validation.js"
import { InvalidTransition, LeaseLost, TaskNotFound } from "./errors.js"
import type { TaskLimits } from "./limits.js"
import type { ApplyOutcome, Snapshot, TaskRepository } from "./repository.js"

/** How a claim message is answered (bound to a connection; see eventlog/acks.ts). */
export type Settle = (ackSubject: string, how: DeliveryAnswer) => void

export interface ClaimOptions {
  readonly workerId: string
  /** Lease for this claim; else the task's `leaseSeconds`; else the default. */
  readonly leaseSeconds?: number
  readonly defaultLeaseSeconds: number
  /**
   * The claim consumer's ack wait, when the caller keeps the claim message alive itself until the
   * lease ends (the SDK worker does, with `leaseKeepAlive`). A lease at least this long then costs
   * no message at claim time: a handler that finishes within the ack wait only acks. Without it,
   * the claim is nak'ed at once with a delay to the lease's end.
   */
  readonly keepAliveAckWaitMs?: number
}

/** A lease won: the task as claimed and the claim span's context (parent of the processing). */
export interface HeldLease {
  readonly tenant: string
  readonly taskId: string
  readonly workerId: string
  readonly attempt: number
  readonly snapshot: Snapshot
  readonly claimContext: Context
  readonly leaseSeconds: number
}

export type ClaimResult =
  | { readonly kind: "claimed"; readonly lease: HeldLease }
  /** Settled without a claim; `retryAt` when the message comes back then (not due, leased). */
  | { readonly kind: "skipped"; readonly reason: string; readonly retryAt?: Date }

/** Claims one delivery, or settles it and says why it was skipped. */
export const claimDelivery = async (
  repo: TaskRepository,
  settle: Settle,
  delivery: ClaimDelivery,
  options: ClaimOptions
): Promise<ClaimResult> => {
  const claim = delivery.claim
  if (claim === undefined) {
    settle(delivery.ackSubject, "term")
    return { kind: "skipped", reason: "undecodable claim message" }
  }
  // A first delivery of a create's claim carries the TaskCreated: claim right after it without a
  // read. Anything that happened since makes the append fail, and the repository reads then.
  const created = delivery.delivered === 1 ? createdOfClaim(repo.log.naming, claim) : undefined
  const snapshot = created !== undefined ? { state: evolve(null, created), version: created.seq } : await repo.load(claim.tenant, claim.taskId)
  const leaseSeconds = options.leaseSeconds ?? snapshot.state?.leaseSeconds ?? options.defaultLeaseSeconds
  let outcome: ApplyOutcome
  try {
    outcome = await repo.apply(
      claim.tenant,
      claim.taskId,
      (now) => ({ type: "ClaimTask", taskId: claim.taskId, tenant: claim.tenant, now, workerId: options.workerId, leaseSeconds, leaseHandle: delivery.ackSubject }),
      { known: snapshot }
    )
  } catch (error) {
    // The log could not take (or confirm) the claim: hand the message back soon rather than
    // after the consumer's ack wait. If the claim did land, the next claimer finds it leased.
    settle(delivery.ackSubject, { nakDelayMs: 1_000 })
    throw error
  }
  if (!outcome.ok) {
    const { reason, retryAt } = outcome.rejection
    if (reason === "not_due" || reason === "leased") {
      const at = new Date((retryAt?.getTime() ?? Date.now()) + 50)
      settle(delivery.ackSubject, { nakDelayMs: at.getTime() - Date.now() })
      return { kind: "skipped", reason, retryAt: at }
    } else if (reason === "not_found" && delivery.delivered < 5) {
      // A replica may not have the create yet: look again shortly before giving the message up.
      settle(delivery.ackSubject, { nakDelayMs: 1_000 })
    } else {
      settle(delivery.ackSubject, reason === "not_found" ? "term" : "ack")
    }
    return { kind: "skipped", reason }
  }
  const claimed = outcome.appended.find((applied) => applied.stored.event.type === "TaskClaimed")
  const state = outcome.snapshot.state
  if (claimed === undefined || state === null || state.status !== "IN_PROGRESS") {
    // Attempts were used up (the expired lease was the last one): the task is dead-lettered.
    settle(delivery.ackSubject, "term")
    return { kind: "skipped", reason: state?.status ?? "not_claimable" }
  }
  if (options.keepAliveAckWaitMs === undefined || leaseSeconds * 1000 < options.keepAliveAckWaitMs) settle(delivery.ackSubject, { nakDelayMs: leaseSeconds * 1000 })
  return {
    kind: "claimed",
    lease: { tenant: claim.tenant, taskId: claim.taskId, workerId: options.workerId, attempt: state.attempts, snapshot: outcome.snapshot, claimContext: claimed.context, leaseSeconds }
  }
}

/** What a lease holder does with its task. */
export type LeaseOutcome =
  | { readonly type: "complete"; readonly result?: unknown; readonly artifacts?: ReadonlyArray<unknown> }
  | { readonly type: "fail"; readonly error: string; readonly result?: unknown; readonly artifacts?: ReadonlyArray<unknown> }
  | { readonly type: "nack"; readonly delaySeconds?: number; readonly reason: string }
  | { readonly type: "abandon" }

/** `value` as text of at most `max` characters: a non-string (an Error passed as the error) as its message or String(), then cut. */
const boundedText = (value: unknown, field: string, max: number): { readonly text: string; readonly issue?: ValidationIssue } => {
  const text = typeof value === "string" ? value : value instanceof Error ? value.message : String(value)
  if (typeof value !== "string") return { text: text.slice(0, max), issue: { field, rule: "type", message: `${field} must be a string; got ${value instanceof Error ? "an Error, its message is used" : typeof value}` } }
  if (text.length > max) return { text: text.slice(0, max), issue: { field, rule: "length", message: `${field} is ${text.length} characters; the first ${max} are kept` } }
  return { text }
}

/**
 * A handler's outcome held to what the HTTP API accepts of a worker: result and artifacts
 * together JSON within the payload limit, an error or a nack's reason text within its length, a
 * nack's delay a number within the longest delay. WHY: what breaks these cannot be stored as it
 * is — the server refuses an event over its max_payload, and a delay that is not a finite number
 * (or an error that is not a string) makes an event no reader of the log accepts — and the task
 * waited out its lease and ran again, attempt after attempt, or was stuck behind the bad event.
 * A result that cannot be stored fails the task saying so (it would not fit on the next attempt
 * either); a text is cut, a delay brought into range (not a number: the backoff's). The first
 * broken rule comes back for the caller to report (the SDK worker) or refuse (`client.tasks`).
 */
export const boundOutcome = (outcome: LeaseOutcome, limits: TaskLimits): { readonly outcome: LeaseOutcome; readonly issue?: ValidationIssue } => {
  switch (outcome.type) {
    case "complete":
    case "fail": {
      if (outcome.result !== undefined || outcome.artifacts !== undefined) {
        const size: { readonly json: string } | ValidationIssue = outcome.artifacts !== undefined && !Array.isArray(outcome.artifacts)
          ? { field: "artifacts", rule: "type", message: "artifacts must be an array" }
          : checkPayload({ result: outcome.result, artifacts: outcome.artifacts }, limits.maxPayloadBytes, "result")
        if ("field" in size) {
          const message = size.rule === "max_bytes" ? `result and artifacts together exceed ${limits.maxPayloadBytes} bytes (${size.message})` : size.message
          const error = outcome.type === "fail" ? boundedText(outcome.error, "error", MAX_ERROR_LENGTH).text : `result not stored: ${message}`
          return { outcome: { type: "fail", error }, issue: { ...size, message } }
        }
      }
      if (outcome.type === "complete") return { outcome }
      const error = boundedText(outcome.error, "error", MAX_ERROR_LENGTH)
      return error.issue === undefined ? { outcome } : { outcome: { ...outcome, error: error.text }, issue: error.issue }
    }
    case "nack": {
      const delay: unknown = outcome.delaySeconds
      let delayIssue: ValidationIssue | undefined
      let delaySeconds: number | undefined
      if (typeof delay === "number" && delay >= 0 && delay <= limits.maxDelaySeconds) delaySeconds = delay
      else if (delay !== undefined) {
        // Not a number (NaN, Infinity, a string): the backoff policy's delay, as when none is named.
        delaySeconds = typeof delay === "number" && Number.isFinite(delay) ? (delay < 0 ? 0 : limits.maxDelaySeconds) : undefined
        delayIssue = {
          field: "delaySeconds",
          rule: "range",
          message: `delaySeconds must be a number from 0 to ${limits.maxDelaySeconds}, got ${String(delay)}; ${delaySeconds === undefined ? "the backoff policy's delay is used" : `${delaySeconds} is used`}`
        }
      }
      const reason = boundedText(outcome.reason, "reason", MAX_REASON_LENGTH)
      const issue = delayIssue ?? reason.issue
      if (issue === undefined) return { outcome }
      return { outcome: { type: "nack", reason: reason.text, ...(delaySeconds !== undefined ? { delaySeconds } : {}) }, issue }
    }
    case "abandon":
      return { outcome }
  }
}

export interface SettledLease {
  readonly state: TaskState
  /** `requeued` after a nack or abandon, `dlq` when the nack used the last attempt. */
  readonly disposition: "completed" | "failed" | "requeued" | "dlq"
  /** Context of the span that wrote the settling event (parent of a webhook delivery). */
  readonly context: Context | undefined
  /** For a nack: the delay the claim was nak'ed with. */
  readonly nakDelaySeconds?: number
}

const throwRejection = (taskId: string, outcome: Extract<ApplyOutcome, { ok: false }>): never => {
  const { reason, message } = outcome.rejection
  if (reason === "not_found") throw new TaskNotFound({ taskId })
  if (reason === "lease_lost" || reason === "not_in_progress" || reason === "terminal") throw new LeaseLost({ taskId, reason, message })
  throw new InvalidTransition({ taskId, reason, message })
}

/**
 * Settles a lease: appends the outcome's event(s), then answers the claim message through the
 * handle the log recorded. Throws LeaseLost when the caller no longer holds the lease.
 */
export const settleLease = async (
  repo: TaskRepository,
  settle: Settle,
  target: { readonly tenant: string; readonly taskId: string; readonly lease: LeaseRef; readonly known?: Snapshot },
  outcome: LeaseOutcome,
  backoff: BackoffSettings
): Promise<SettledLease> => {
  const { tenant, taskId, lease } = target
  const { workerId, attempt } = lease
  let nakDelaySeconds = 0
  const applied = await repo.apply(
    tenant,
    taskId,
    (now, state) => {
      switch (outcome.type) {
        // Literals, not spreads of a shared base: this runs for every result (see decide.ts `make`).
        case "complete":
          return { type: "CompleteTask", taskId, tenant, workerId, attempt, now, result: outcome.result, artifacts: outcome.artifacts }
        case "fail":
          return { type: "FailTask", taskId, tenant, workerId, attempt, now, error: outcome.error, result: outcome.result, artifacts: outcome.artifacts }
        case "abandon":
          return { type: "AbandonTask", taskId, tenant, workerId, attempt, now }
        case "nack":
          nakDelaySeconds = outcome.delaySeconds ?? backoffSeconds(backoff, Math.max(1, state?.attempts ?? 1))
          return { type: "NackTask", taskId, tenant, workerId, attempt, now, reason: outcome.reason, delaySeconds: nakDelaySeconds }
      }
    },
    target.known !== undefined ? { known: target.known } : {}
  )
  if (!applied.ok) return throwRejection(taskId, applied)
  const state = applied.snapshot.state
  if (state === null) throw new TaskNotFound({ taskId })
  // The claim message handle of the lease just settled, as its TaskClaimed recorded it.
  const handle = applied.before.state?.leaseHandle
  const last = applied.appended[applied.appended.length - 1]
  const context = last?.context
  const disposition: SettledLease["disposition"] =
    state.status === "COMPLETED" ? "completed" : state.status === "FAILED" ? "failed" : state.status === "DEAD_LETTERED" ? "dlq" : "requeued"
  if (handle !== undefined) {
    if (disposition === "dlq") settle(handle, "term")
    else if (disposition === "requeued") settle(handle, { nakDelayMs: nakDelaySeconds * 1000 })
    else settle(handle, "ack")
  }
  return { state, disposition, context, ...(outcome.type === "nack" ? { nakDelaySeconds } : {}) }
}

/** Extends a held lease by `extendSeconds` from now and reschedules the claim's redelivery. */
export const heartbeatLease = async (
  repo: TaskRepository,
  settle: Settle,
  target: { readonly tenant: string; readonly taskId: string; readonly lease: LeaseRef; readonly known?: Snapshot },
  extendSeconds: number
): Promise<TaskState> => {
  const { tenant, taskId, lease } = target
  const applied = await repo.apply(
    tenant,
    taskId,
    (now) => ({ type: "HeartbeatTask", taskId, tenant, now, workerId: lease.workerId, attempt: lease.attempt, extendSeconds }),
    target.known !== undefined ? { known: target.known } : {}
  )
  if (!applied.ok) return throwRejection(taskId, applied)
  const state = applied.snapshot.state
  if (state === null) throw new TaskNotFound({ taskId })
  if (state.leaseHandle !== undefined) settle(state.leaseHandle, { nakDelayMs: extendSeconds * 1000 })
  return state
}

/** Cancels a task that has not ended; a claim in progress is released so it never comes back. */
export const cancelTask = async (repo: TaskRepository, settle: Settle, tenant: string, taskId: string, reason: string): Promise<TaskState> => {
  const applied = await repo.apply(tenant, taskId, (now) => ({ type: "CancelTask", taskId, tenant, now, reason }))
  if (!applied.ok) return throwRejection(taskId, applied)
  const handle = applied.before.state?.leaseHandle
  if (handle !== undefined) settle(handle, "ack")
  if (applied.snapshot.state === null) throw new TaskNotFound({ taskId })
  return applied.snapshot.state
}

/** Puts a dead-lettered task back in its queue: attempts reset, same trace (the dispatcher acts). */
export const requeueTask = async (repo: TaskRepository, tenant: string, taskId: string, reason: string): Promise<TaskState> => {
  const applied = await repo.apply(tenant, taskId, (now) => ({ type: "RequeueTask", taskId, tenant, now, reason }))
  if (!applied.ok) return throwRejection(taskId, applied)
  if (applied.snapshot.state === null) throw new TaskNotFound({ taskId })
  return applied.snapshot.state
}
