/**
 * Bounds on every delay computed from data (a task's runAt, a lease, a backoff, a webhook retry)
 * before it reaches a timer or the server. Node fires a timer longer than 2^31−1 ms at once (with
 * a TimeoutOverflowWarning), and nats-server refuses a nak delay that overflows its nanosecond
 * int64 and redelivers at once: either turns one far-future task into a tight loop.
 */

/** Longest delay a Node timer honours. */
export const MAX_TIMER_MS = 2_147_483_647

/**
 * Longest redelivery delay asked of the server: more than any delay codeq accepts (366 days), far
 * below the int64 nanosecond limit (about 292 years). A message due later comes back then and is
 * delayed again.
 */
export const MAX_REDELIVERY_DELAY_MS = 400 * 86_400_000

const clamp = (ms: number, max: number): number => (Number.isFinite(ms) ? Math.min(max, Math.max(0, Math.round(ms))) : ms > 0 ? max : 0)

/** A delay safe for setTimeout/setInterval: 0 to MAX_TIMER_MS, NaN as 0. */
export const timerDelayMs = (ms: number): number => clamp(ms, MAX_TIMER_MS)

/** A redelivery delay safe for the server: 0 to MAX_REDELIVERY_DELAY_MS, NaN as 0. */
export const redeliveryDelayMs = (ms: number): number => clamp(ms, MAX_REDELIVERY_DELAY_MS)
