/**
 * The event log port: append one event to a task's subject under optimistic concurrency, and read
 * a task's history in order. Errors are part of the signature: an append resolves to a sequence or
 * a typed AppendError and never rejects; a read rejects only with LogError.
 */
import type { EventTrace, StoredEvent, TaskEvent } from "../domain/events.js"
import type { Naming } from "../../streams/definitions.js"
import type { AppendError } from "./errors.js"

export interface AppendRequest {
  readonly tenant: string
  readonly taskId: string
  readonly event: TaskEvent
  /** Trace headers of the span performing the transition. */
  readonly trace: EventTrace
  /** The subject's last sequence this write was decided on; 0 for a create. */
  readonly expectedSeq: number
}

/**
 * The outcome of one append: the sequence the log stored the event at, or why it did not. A
 * ConcurrencyConflict means nothing was stored; a LogError says whether it may have been.
 */
export type AppendResult =
  | { readonly ok: true; readonly seq: number; readonly duplicate: boolean }
  | { readonly ok: false; readonly error: AppendError }

/** A task's events in log order. */
export interface TaskHistory {
  readonly events: ReadonlyArray<StoredEvent>
  /** Last sequence on the task's subject (0 when empty): the expected sequence of the next append. */
  readonly version: number
  /** Messages on the subject that did not decode; skipped, reported here. */
  readonly undecodable: ReadonlyArray<{ readonly seq: number; readonly reason: string }>
}

export interface EventLog {
  readonly naming: Naming
  append(request: AppendRequest): Promise<AppendResult>
  readTask(tenant: string, taskId: string, fromSeq?: number): Promise<TaskHistory>
}
