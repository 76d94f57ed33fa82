/**
 * Trying again, one way everywhere: an attempt, a test of its outcome, and a named Effect
 * `Schedule` saying how long to wait before the next one and when to stop. No module writes its
 * own loop of attempts and pauses.
 *
 * `tryThenRetry` makes the first attempt as a plain call and starts the schedule only when that
 * attempt asks for another: running a fiber for every call of a hot path (one per task) costs
 * measurably more than the call. `retryingPromise` runs every attempt under the schedule.
 */
import type { Duration } from "effect"
import { Cause, Effect, Either, Exit, Schedule } from "effect"

/** What one attempt ended with: a value, or the rejection it threw (kept as is, never wrapped). */
export type Attempted<A> = { readonly ok: true; readonly value: A } | { readonly ok: false; readonly error: unknown }

const settle = <A>(attempt: () => Promise<A>): Promise<Attempted<A>> =>
  attempt().then(
    (value) => ({ ok: true, value }),
    (error: unknown) => ({ ok: false, error })
  )

/**
 * Runs `attempt` again while `again` says its outcome calls for it and `schedule` allows, waiting
 * the schedule's delays (on Effect's clock, so a TestClock drives it in tests). Resolves with the
 * last outcome's value or rejects with its error, exactly as the attempt resolved or rejected.
 * The schedule counts the attempts made here: `Schedule.recurs(2)` allows three in all.
 */
export const retrying = <A>(
  attempt: () => Promise<A>,
  again: (outcome: Attempted<A>) => boolean,
  schedule: Schedule.Schedule<unknown, Attempted<A>>,
  /** An outcome already seen (and judged by `again`) that counts as the first attempt. */
  first?: Attempted<A>
): Effect.Effect<A, unknown> => {
  let seen = first
  const once = Effect.suspend(() => {
    const known = seen
    seen = undefined
    return known !== undefined ? Effect.fail(known) : Effect.promise(() => settle(attempt)).pipe(Effect.flatMap((outcome) => (again(outcome) ? Effect.fail(outcome) : Effect.succeed(outcome))))
  })
  return once.pipe(
    Effect.retry(schedule),
    Effect.either,
    Effect.flatMap((either) => {
      const outcome = Either.merge(either)
      return outcome.ok ? Effect.succeed(outcome.value) : Effect.fail(outcome.error)
    })
  )
}

/** The wait for the next attempt was aborted (the `signal` given to `retryingPromise`). */
export class RetryAborted extends Error {
  override readonly name = "RetryAborted"
}

/**
 * `retrying` as a Promise: rejects with the last attempt's own error, or with RetryAborted as soon
 * as `signal` aborts (an attempt in flight then is left to finish on its own).
 */
export const retryingPromise = async <A>(
  attempt: () => Promise<A>,
  again: (outcome: Attempted<A>) => boolean,
  schedule: Schedule.Schedule<unknown, Attempted<A>>,
  signal?: AbortSignal,
  first?: Attempted<A>
): Promise<A> => {
  if (signal?.aborted === true) throw new RetryAborted("aborted before the first attempt")
  const exit = await Effect.runPromiseExit(Effect.either(retrying(attempt, again, schedule, first)), signal === undefined ? undefined : { signal })
  if (Exit.isFailure(exit)) {
    // Interrupted: the signal. Anything else is a defect (`again` threw): not an abort.
    if (Cause.isInterruptedOnly(exit.cause)) throw new RetryAborted("aborted while retrying")
    throw Cause.squash(exit.cause)
  }
  if (Either.isLeft(exit.value)) throw exit.value.left
  return exit.value.right
}

/**
 * The first attempt as a plain call, no fiber; when `again` asks for another, the schedule takes
 * over with that outcome as its first, so the next attempt waits the schedule's first delay.
 * Settles as `retryingPromise` does.
 */
export const tryThenRetry = async <A>(
  attempt: () => Promise<A>,
  again: (outcome: Attempted<A>) => boolean,
  schedule: Schedule.Schedule<unknown, Attempted<A>>,
  signal?: AbortSignal
): Promise<A> => {
  const first = await settle(attempt)
  if (!again(first)) {
    if (first.ok) return first.value
    throw first.error
  }
  return retryingPromise(attempt, again, schedule, signal, first)
}

/** Jittered exponential from `first`, each delay at most `cap`: the shape of every retry here. */
export const backoff = (first: Duration.DurationInput, cap: Duration.DurationInput) =>
  Schedule.union(Schedule.exponential(first, 2), Schedule.spaced(cap)).pipe(Schedule.jittered)
