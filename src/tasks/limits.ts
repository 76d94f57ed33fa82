/** Limits and defaults of task operations. Every field has a production-sane default. */
export interface TaskLimits {
  /** Largest serialised payload accepted, in bytes. Default 256 KiB. */
  readonly maxPayloadBytes: number
  /** Attempts when a create names none. Default 5 (codeQ's). */
  readonly defaultMaxAttempts: number
  /** Largest `maxAttempts` accepted. Default 100. */
  readonly maxMaxAttempts: number
  /** Lease when a claim names none, in seconds. Default 300. */
  readonly defaultLeaseSeconds: number
  /** Longest lease or extension accepted, in seconds. Default 86 400. */
  readonly maxLeaseSeconds: number
  /** Furthest a task may be scheduled ahead (`runAt`, `delaySeconds`, a nack's delay), in seconds. Default 366 days. */
  readonly maxDelaySeconds: number
  /** Most commands one claim (or one worker) may name. Default 100. */
  readonly maxClaimCommands: number
}

export const DEFAULT_LIMITS: TaskLimits = {
  maxPayloadBytes: 256 * 1024,
  defaultMaxAttempts: 5,
  maxMaxAttempts: 100,
  defaultLeaseSeconds: 300,
  maxLeaseSeconds: 86_400,
  maxDelaySeconds: 366 * 86_400,
  maxClaimCommands: 100
}

/** Room a task's document needs beside its payload and result: the other fields, an error of 4,096 characters escaped. */
const DOCUMENT_OVERHEAD_BYTES = 32 * 1024

/**
 * What a nats-server's `max_payload` must take for tasks at these limits: a task-state document
 * holds the payload and the result (each up to `maxPayloadBytes`) and the rest of the task.
 */
export const neededMaxPayload = (limits: Pick<TaskLimits, "maxPayloadBytes">): number => 2 * limits.maxPayloadBytes + DOCUMENT_OVERHEAD_BYTES

/**
 * Why a server's `max_payload` is too small for these limits, or undefined. Below it, a create
 * with a payload near the limit is refused (LogError `rejected`), and a task's document may not be
 * written to the read model.
 */
export const maxPayloadShortfall = (maxPayload: number | undefined, limits: Pick<TaskLimits, "maxPayloadBytes">): string | undefined => {
  const needed = neededMaxPayload(limits)
  if (maxPayload === undefined || maxPayload >= needed) return undefined
  return `the nats-server's max_payload is ${maxPayload} bytes; tasks with payloads and results up to ${limits.maxPayloadBytes} bytes need ${needed}: creates near the limit are refused and task documents may not be written (set max_payload to 1 MB, the server's default)`
}
