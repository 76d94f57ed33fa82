/** The task as clients see it: codeQ's task JSON (DESIGN §5), derived from the folded state. */
import type { TaskState, TaskStatus } from "../domain/events.js"

export interface TaskView {
  readonly id: string
  readonly command: string
  readonly payload: unknown
  readonly priority: number
  readonly webhook?: string
  readonly traceParent?: string
  readonly traceState?: string
  readonly status: TaskStatus
  readonly workerId?: string
  readonly leaseUntil?: string
  readonly attempts: number
  readonly maxAttempts: number
  readonly runAt?: string
  readonly result?: unknown
  readonly error?: string
  readonly artifacts?: ReadonlyArray<unknown>
  readonly tenantId: string
  readonly createdAt: string
  readonly updatedAt: string
}

/** Task JSON; optional fields are absent rather than undefined. Built by assignment (hot path). */
export const toView = (s: TaskState): TaskView => {
  const view: { -readonly [K in keyof TaskView]: TaskView[K] } = {
    id: s.id,
    command: s.command,
    payload: s.payload,
    priority: s.priority,
    status: s.status,
    attempts: s.attempts,
    maxAttempts: s.maxAttempts,
    tenantId: s.tenant,
    createdAt: s.createdAt,
    updatedAt: s.updatedAt
  }
  if (s.webhook !== undefined) view.webhook = s.webhook
  if (s.traceParent !== undefined) view.traceParent = s.traceParent
  if (s.traceState !== undefined) view.traceState = s.traceState
  if (s.workerId !== undefined) view.workerId = s.workerId
  if (s.leaseUntil !== undefined) view.leaseUntil = s.leaseUntil
  if (s.runAt !== undefined) view.runAt = s.runAt
  if (s.result !== undefined) view.result = s.result
  if (s.error !== undefined) view.error = s.error
  if (s.artifacts !== undefined) view.artifacts = s.artifacts
  return view
}

/** One dead-letter entry as listed to operators. */
export interface DeadLetterEntry {
  readonly taskId: string
  readonly tenant: string
  readonly command: string
  readonly reason: string
  readonly attempts: number
  readonly deadLetteredAt: string
}
