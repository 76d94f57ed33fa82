/**
 * Errors of the task operations, shared by the SDK, the HTTP API and the CLI. Each names what
 * went wrong in a way a caller can switch on (`_tag`, `reason`, `field`).
 */
import { Data } from "effect"
import type { RejectionReason } from "../domain/decide.js"
import type { ValidationIssue } from "../domain/validation.js"

/** Bad input: names the field and the rule it broke. Nothing was appended. */
export class ValidationError extends Data.TaggedError("ValidationError")<ValidationIssue> {}

export class TaskNotFound extends Data.TaggedError("TaskNotFound")<{ readonly taskId: string }> {
  override get message() {
    return `task ${this.taskId} not found`
  }
}

/** The caller no longer holds the lease it acts on (expired and re-claimed, or the task ended). */
export class LeaseLost extends Data.TaggedError("LeaseLost")<{
  readonly taskId: string
  readonly reason: Extract<RejectionReason, "lease_lost" | "not_in_progress" | "terminal">
  readonly message: string
}> {}

/** A transition the task's state does not allow (e.g. requeue of a task that is not dead). */
export class InvalidTransition extends Data.TaggedError("InvalidTransition")<{
  readonly taskId: string
  readonly reason: RejectionReason
  readonly message: string
}> {}

/**
 * Too many claims of one tenant long-polling at once with different sets of commands: each set
 * holds a claim source, and their number is capped. Retry shortly (HTTP 429).
 */
export class ClaimCapacity extends Data.TaggedError("ClaimCapacity")<{ readonly tenant: string; readonly limit: number }> {
  override get message() {
    return `tenant ${this.tenant} already has ${this.limit} claims long-polling with different sets of commands; retry shortly`
  }
}

export type TaskOperationError = ValidationError | TaskNotFound | LeaseLost | InvalidTransition | ClaimCapacity
