/**
 * Retry delays for a nack that names none (DESIGN §3): codeQ's five policies, base 5 s, cap 900 s.
 * Pure: the random source is a parameter, so every formula is testable.
 */
export type BackoffPolicy = "fixed" | "linear" | "exponential" | "exp_equal_jitter" | "exp_full_jitter"

export const BACKOFF_POLICIES: ReadonlyArray<BackoffPolicy> = ["fixed", "linear", "exponential", "exp_equal_jitter", "exp_full_jitter"]

export interface BackoffSettings {
  readonly policy: BackoffPolicy
  readonly baseSeconds: number
  readonly capSeconds: number
}

export const DEFAULT_BACKOFF: BackoffSettings = { policy: "exp_full_jitter", baseSeconds: 5, capSeconds: 900 }

/** Delay in seconds before the next delivery after `attempt` (1-based) failed. */
export const backoffSeconds = (settings: BackoffSettings, attempt: number, random: () => number = Math.random): number => {
  const { baseSeconds: base, capSeconds: cap } = settings
  const n = Math.max(1, Math.floor(attempt))
  const exponential = Math.min(cap, base * 2 ** (n - 1))
  switch (settings.policy) {
    case "fixed":
      return Math.min(cap, base)
    case "linear":
      return Math.min(cap, base * n)
    case "exponential":
      return exponential
    case "exp_equal_jitter":
      return exponential / 2 + random() * (exponential / 2)
    case "exp_full_jitter":
      return random() * exponential
  }
}
