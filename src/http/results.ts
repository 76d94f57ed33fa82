/**
 * Results as codeQ reports them: a ResultRecord `{taskId, status, result, error, artifacts,
 * completedAt}` read from the task's history, and the long-poll for one. The wait subscribes to
 * the task's event subject before each read, so an event appended meanwhile wakes it at once; a
 * periodic re-read covers a notification lost to a reconnect. Nothing is cached between requests.
 */
import { TERMINAL, fold, type StoredEvent, type TaskState } from "../domain/events.js"
import { checkPayload, checkTaskId, checkTenant, firstIssue } from "../domain/validation.js"
import { eventSubject } from "../../streams/definitions.js"
import { TaskNotFound, ValidationError } from "../tasks/errors.js"
import type { LeaseOutcome } from "../tasks/lifecycle.js"
import type { TaskLimits } from "../tasks/limits.js"
import { toView, type TaskView } from "../tasks/view.js"
import { badRequest } from "./errors.js"
import type { HttpBackend } from "./backend.js"
import { wakeOnSubject } from "../eventlog/connection.js"
import type { ArtifactIn, SubmitResultBody } from "./schemas.js"

export interface ResultRecord {
  readonly taskId: string
  readonly status: "COMPLETED" | "FAILED"
  readonly result?: unknown
  readonly error?: string
  readonly artifacts?: ReadonlyArray<unknown>
  readonly completedAt: string
}

/** The record of a task that has ended with a result, else undefined. */
export const resultRecordOf = (state: TaskState, completedAt = state.updatedAt): ResultRecord | undefined => {
  if (state.status !== "COMPLETED" && state.status !== "FAILED") return undefined
  return {
    taskId: state.id,
    status: state.status,
    ...(state.result !== undefined ? { result: state.result } : {}),
    ...(state.error !== undefined ? { error: state.error } : {}),
    ...(state.artifacts !== undefined ? { artifacts: state.artifacts } : {}),
    completedAt
  }
}

const completionTime = (events: ReadonlyArray<StoredEvent>): string | undefined =>
  events.findLast((e) => e.event.type === "TaskCompleted" || e.event.type === "TaskFailed")?.event.at

export interface TaskOutcome {
  readonly task: TaskView
  readonly result: ResultRecord | undefined
}

const read = async (backend: HttpBackend, tenant: string, taskId: string): Promise<TaskOutcome> => {
  const history = await backend.repo.log.readTask(tenant, taskId)
  const state = fold(history.events)
  if (state === null) throw new TaskNotFound({ taskId })
  return { task: toView(state), result: resultRecordOf(state, completionTime(history.events)) }
}

/** Longest wait between re-reads while long-polling, in case a notification was missed. */
const REREAD_MS = 1_000

/**
 * The task and its result; with `waitMs`, waits until the task has ended, the wait ends, or
 * `signal` aborts. A task that ended without a result (dead-lettered, cancelled) ends the wait at
 * once with `result` undefined: nothing more will come unless an operator requeues it. Throws
 * TaskNotFound at once.
 */
export const awaitResult = async (backend: HttpBackend, tenant: string, taskId: string, waitMs: number, signal: AbortSignal): Promise<TaskOutcome> => {
  const issue = firstIssue(checkTenant(tenant), checkTaskId(taskId))
  if (issue !== undefined) throw new ValidationError(issue)
  if (waitMs <= 0) return read(backend, tenant, taskId)
  const deadline = Date.now() + waitMs
  let wake: (() => void) | undefined
  const unwatch = wakeOnSubject(backend.nc, eventSubject(backend.naming, tenant, taskId), () => wake?.())
  try {
    for (;;) {
      const outcome = await read(backend, tenant, taskId)
      const left = deadline - Date.now()
      if (outcome.result !== undefined || TERMINAL.has(outcome.task.status) || left <= 0 || signal.aborted) return outcome
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer)
          signal.removeEventListener("abort", done)
          wake = undefined
          resolve()
        }
        const timer = setTimeout(done, Math.min(left, REREAD_MS))
        signal.addEventListener("abort", done, { once: true })
        wake = done
      })
    }
  } finally {
    unwatch()
  }
}

const artifactsOf = (artifacts: ReadonlyArray<ArtifactIn> | undefined): ReadonlyArray<ArtifactIn> | undefined => {
  if (artifacts === undefined) return undefined
  for (const [i, a] of artifacts.entries()) {
    if (a.url === undefined && a.contentBase64 === undefined)
      throw badRequest({ field: `artifacts[${i}]`, rule: "required", message: `artifacts[${i}] needs a url or contentBase64` })
    if (a.contentBase64 !== undefined && !/^[A-Za-z0-9+/]*={0,2}$/.test(a.contentBase64))
      throw badRequest({ field: `artifacts[${i}].contentBase64`, rule: "base64", message: `artifacts[${i}].contentBase64 must be base64` })
  }
  return artifacts
}

/**
 * The lease outcome of a codeQ result submission: COMPLETED needs `result`, FAILED needs a
 * non-empty `error` (codeQ's rules); result and artifacts together are held to the payload limit.
 * Artifacts are kept as given (codeq has no object store): a url, or inline base64 content.
 */
export const outcomeOfResult = (body: Omit<SubmitResultBody, "workerId">, limits: TaskLimits, prefix = ""): LeaseOutcome => {
  if (body.status === "COMPLETED" && body.result === undefined)
    throw badRequest({ field: `${prefix}result`, rule: "required", message: `${prefix}result is required when status is COMPLETED` })
  if (body.status === "FAILED" && (body.error === undefined || body.error.trim() === ""))
    throw badRequest({ field: `${prefix}error`, rule: "required", message: `${prefix}error is required when status is FAILED` })
  const artifacts = artifactsOf(body.artifacts)
  const size = checkPayload({ result: body.result, artifacts }, limits.maxPayloadBytes, `${prefix}result`)
  if ("field" in size) throw badRequest({ ...size, message: `${prefix}result and artifacts together exceed ${limits.maxPayloadBytes} bytes` })
  const extra = { ...(body.result !== undefined ? { result: body.result } : {}), ...(artifacts !== undefined ? { artifacts } : {}) }
  return body.status === "COMPLETED" ? { type: "complete", ...extra } : { type: "fail", error: body.error ?? "", ...extra }
}
