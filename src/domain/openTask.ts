/**
 * The entry a task has in the open-task index while it waits for a worker or is leased: what queue
 * statistics count, without the task's payload, result or history. A task that ends (completes,
 * fails, is cancelled or dead-lettered) has no entry; dead letters are counted from their own index.
 */
import type { TaskState, TaskStatus } from "./events.js"

/** The statuses a task has an entry for. */
export type OpenStatus = Extract<TaskStatus, "PENDING" | "IN_PROGRESS">

export interface OpenTask {
  readonly command: string
  readonly priority: number
  readonly status: OpenStatus
  /** When a PENDING task may first be claimed, if it was created with a time or a delay. */
  readonly runAt?: string
  /** The TaskCreated's sequence: the task's place in creation order. */
  readonly createdSeq: number
}

const isOpen = (status: TaskStatus): status is OpenStatus => status === "PENDING" || status === "IN_PROGRESS"

/** The task's index entry as JSON, or undefined when the task is not open (or unknown). */
export const openTaskEntry = (state: TaskState | null): string | undefined => {
  if (state === null || !isOpen(state.status)) return undefined
  const entry: OpenTask = {
    command: state.command,
    priority: state.priority,
    status: state.status,
    ...(state.runAt !== undefined ? { runAt: state.runAt } : {}),
    createdSeq: state.createdSeq
  }
  return JSON.stringify(entry)
}
