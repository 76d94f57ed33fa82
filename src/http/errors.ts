/**
 * How failures leave the HTTP API: one JSON shape `{error, field?, rule?, reason?}` and one status
 * per cause. Library errors are translated here and nowhere else, so every route reports a broken
 * rule, a missing task, a lost lease or an unreachable NATS the same way. Nothing internal (stack,
 * subject, connection detail) reaches the client on a 500.
 */
import { Data, Schema } from "effect"
import type { ValidationIssue } from "../domain/validation.js"
import { ConcurrencyConflict, LogError, isServerUnreachable, isStreamNotFound } from "../eventlog/errors.js"
import { ClaimCapacity, InvalidTransition, LeaseLost, TaskNotFound, ValidationError } from "../tasks/errors.js"

/** The body of every error response. */
export const ErrorBody = Schema.Struct({
  error: Schema.String.annotations({ description: "what went wrong, for a human" }),
  field: Schema.optional(Schema.String.annotations({ description: "the request field at fault, e.g. tasks[2].priority" })),
  rule: Schema.optional(Schema.String.annotations({ description: "the rule it broke: required, type, unknown, range, integer, pattern, uuid, content_type, …" })),
  reason: Schema.optional(
    Schema.String.annotations({
      description: "for 409: lease_lost, not_in_progress, terminal, not_dead_lettered, conflict; for a result that will not come: dead_lettered, cancelled"
    })
  )
}).annotations({ identifier: "Error" })
export type ErrorBody = typeof ErrorBody.Type

/** A response that ends the request early: status, body and extra headers (Retry-After, Allow). */
export class HttpError extends Data.TaggedError("HttpError")<{
  readonly status: number
  readonly body: ErrorBody
  readonly headers?: Readonly<Record<string, string>>
  readonly cause?: unknown
}> {
  override get message() {
    return `${this.status} ${this.body.error}`
  }
}

export const badRequest = (issue: ValidationIssue): HttpError =>
  new HttpError({ status: 400, body: { error: issue.message, field: issue.field, rule: issue.rule } })

export const unauthorized = (error: string): HttpError =>
  new HttpError({ status: 401, body: { error }, headers: { "WWW-Authenticate": `Bearer error="invalid_token"` } })

export const forbidden = (error: string, rule?: string): HttpError =>
  new HttpError({ status: 403, body: rule === undefined ? { error } : { error, rule } })

/** Seconds a client should wait before retrying a 503. */
export const RETRY_AFTER_SECONDS = 2

export const unavailable = (error: string, cause?: unknown): HttpError =>
  new HttpError({ status: 503, body: { error }, headers: { "Retry-After": String(RETRY_AFTER_SECONDS) }, cause })

const fromNats = (error: Error): HttpError | undefined => {
  if (isStreamNotFound(error)) return unavailable("the codeq streams are not provisioned", error)
  if (isServerUnreachable(error)) return unavailable("NATS is unreachable", error)
  return undefined
}

/** Maps anything a handler threw to the response it deserves. */
export const toHttpError = (error: unknown): HttpError => {
  if (error instanceof HttpError) return error
  if (error instanceof ValidationError) return badRequest(error)
  if (error instanceof TaskNotFound) return new HttpError({ status: 404, body: { error: "task not found" } })
  if (error instanceof LeaseLost || error instanceof InvalidTransition)
    return new HttpError({ status: 409, body: { error: error.message, reason: error.reason } })
  if (error instanceof ClaimCapacity)
    return new HttpError({ status: 429, body: { error: error.message, rule: "claim_sources" }, headers: { "Retry-After": "1" } })
  if (error instanceof ConcurrencyConflict)
    return new HttpError({ status: 409, body: { error: "the task kept changing under this request; retry it", reason: "conflict" }, cause: error })
  if (error instanceof LogError) {
    if (error.reason === "rejected") return new HttpError({ status: 500, body: { error: "the event log refused the write" }, cause: error })
    return unavailable(
      error.reason === "unavailable"
        ? "the event log is unavailable: no JetStream responder (a stream leader election in progress, or the streams are not provisioned); retry"
        : `the event log is unavailable (${error.reason})`,
      error
    )
  }
  if (error instanceof Error) {
    const nats = fromNats(error) ?? (error.cause instanceof Error ? fromNats(error.cause) : undefined)
    if (nats !== undefined) return nats
  }
  return new HttpError({ status: 500, body: { error: "internal error" }, cause: error })
}

/** An OpenAPI response of the error body. */
export const errorResponse = (description: string) => ({ description, schema: ErrorBody })

/** The answers every authenticated route may give. */
export const AUTH_ERRORS = {
  401: errorResponse("no or invalid token"),
  403: errorResponse("token lacks a scope or a valid tenant"),
  429: errorResponse("rate limited"),
  503: errorResponse("NATS unreachable")
}
