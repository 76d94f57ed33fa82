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
