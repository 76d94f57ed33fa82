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

const defined = <T extends object>(obj: T): T =>
  Object.fromEntries(Object.entries(obj).filter(([, value]) => value !== undefined)) as T

export const toView = (s: TaskState): TaskView =>
  defined({
    id: s.id,
    command: s.command,
    payload: s.payload,
    priority: s.priority,
    webhook: s.webhook,
    traceParent: s.traceParent,
    traceState: s.traceState,
    status: s.status,
    workerId: s.workerId,
    leaseUntil: s.leaseUntil,
    attempts: s.attempts,
    maxAttempts: s.maxAttempts,
    runAt: s.runAt,
    result: s.result,
    error: s.error,
    artifacts: s.artifacts,
    tenantId: s.tenant,
    createdAt: s.createdAt,
    updatedAt: s.updatedAt
  })
