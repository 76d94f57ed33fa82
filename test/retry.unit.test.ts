/**
 * Trying again (src/domain/retry.ts) on Effect's TestClock: the schedule's delays are waited (no
 * attempt before its time), an attempt's own error comes back unwrapped, a budget ends the tries,
 * an abort ends the wait at once. Time is the test clock's: nothing here sleeps.
 */
import { Duration, Effect, Fiber, Schedule, TestClock, TestContext } from "effect"
import { describe, expect, it } from "vitest"
import { backoff, retrying, retryingPromise, RetryAborted, tryThenRetry, type Attempted } from "../src/domain/retry.js"
import { appendRetry } from "../src/tasks/repository.js"

class Boom extends Error {
  override readonly name = "Boom"
}

/** Lets the attempts' promises settle (real microtasks and one macrotask), without moving the clock. */
const settle = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

const onTestClock = <A, E>(program: Effect.Effect<A, E>) => Effect.runPromise(program.pipe(Effect.provide(TestContext.TestContext)))

describe("retrying on the test clock", () => {
  it("waits each delay of the schedule before the next attempt, and gives the value that ended it", async () => {
    await onTestClock(
      Effect.gen(function* () {
        let attempts = 0
        const attempt = () => (++attempts < 3 ? Promise.reject(new Boom(`try ${attempts}`)) : Promise.resolve("done"))
        const fiber = yield* Effect.fork(retrying(attempt, (outcome) => !outcome.ok, Schedule.spaced(Duration.seconds(1))))
        yield* settle
        expect(attempts).toBe(1)
        yield* TestClock.adjust(Duration.millis(999))
        yield* settle
        expect(attempts).toBe(1)
        yield* TestClock.adjust(Duration.millis(1))
        yield* settle
        expect(attempts).toBe(2)
        yield* TestClock.adjust(Duration.seconds(1))
        expect(yield* Fiber.join(fiber)).toBe("done")
        expect(attempts).toBe(3)
      })
    )
  })

  it("ends with the last attempt's own error when the schedule gives up (not a wrapper)", async () => {
    await onTestClock(
      Effect.gen(function* () {
        let attempts = 0
        const fiber = yield* Effect.fork(
          Effect.flip(retrying(() => Promise.reject(new Boom(`try ${++attempts}`)), (outcome) => !outcome.ok, Schedule.recurs(2)))
        )
        const error = yield* Fiber.join(fiber)
        expect(error).toBeInstanceOf(Boom)
        expect((error as Boom).message).toBe("try 3")
      })
    )
    // The same through the Promise form.
    let tries = 0
    const rejected = await retryingPromise(() => Promise.reject(new Boom(`try ${++tries}`)), (outcome) => !outcome.ok, Schedule.recurs(1)).catch((e: unknown) => e)
    expect(rejected).toBeInstanceOf(Boom)
    expect(tries).toBe(2)
  })

  it("stops when the outcome does not ask for another try, even if it is a failure", async () => {
    let attempts = 0
    const rejected = await retryingPromise(() => Promise.reject(new Boom(String(++attempts))), () => false, Schedule.forever).catch((e: unknown) => e)
    expect(rejected).toBeInstanceOf(Boom)
    expect(attempts).toBe(1)
  })

  it("an append's retry budget (appendRetry) ends the tries once spent, not before", async () => {
    await onTestClock(
      Effect.gen(function* () {
        let attempts = 0
        const fiber = yield* Effect.fork(Effect.flip(retrying(() => Promise.reject(new Boom(String(++attempts))), (outcome) => !outcome.ok, appendRetry(5_000))))
        yield* settle
        // Jittered exponential from 50 ms: within 4 s of test time it tries several times and goes on.
        for (let i = 0; i < 40; i++) {
          yield* TestClock.adjust(Duration.millis(100))
          yield* settle
        }
        const during = attempts
        expect(during).toBeGreaterThan(3)
        expect(yield* Fiber.poll(fiber)).toMatchObject({ _tag: "None" })
        for (let i = 0; i < 40 && (yield* Fiber.poll(fiber))._tag === "None"; i++) {
          yield* TestClock.adjust(Duration.millis(250))
          yield* settle
        }
        expect(yield* Fiber.join(fiber)).toBeInstanceOf(Boom)
        expect(attempts).toBeGreaterThan(during)
      })
    )
  })

  it("a backoff never waits longer than its cap (jitter included)", async () => {
    await onTestClock(
      Effect.gen(function* () {
        let attempts = 0
        const fiber = yield* Effect.fork(retrying(() => Promise.reject(new Boom(String(++attempts))), (outcome) => !outcome.ok, backoff(Duration.millis(100), Duration.seconds(1))))
        yield* settle
        // Doubling from 100 ms would reach 51 s by the tenth try; capped at 1 s (±20 % jitter),
        // twenty seconds hold well over fifteen tries.
        for (let i = 0; i < 200; i++) {
          yield* TestClock.adjust(Duration.millis(100))
          yield* settle
        }
        expect(attempts).toBeGreaterThan(15)
        yield* Fiber.interrupt(fiber)
      })
    )
  })

  it("an abort ends the wait between tries at once with RetryAborted", async () => {
    const abort = new AbortController()
    let attempts = 0
    const waiting = retryingPromise(() => Promise.resolve(++attempts), () => true, Schedule.spaced(Duration.hours(1)), abort.signal).catch((e: unknown) => e)
    await new Promise<void>((resolve) => setImmediate(resolve))
    expect(attempts).toBe(1)
    abort.abort()
    expect(await waiting).toBeInstanceOf(RetryAborted)
    expect(attempts).toBe(1)
    // Aborted before it starts: no attempt at all.
    expect(await retryingPromise(() => Promise.resolve(++attempts), () => false, Schedule.forever, abort.signal).catch((e: unknown) => e)).toBeInstanceOf(RetryAborted)
    expect(attempts).toBe(1)
  })

  it("given an outcome already seen, counts it as the first: the next attempt waits the first delay, and it is not judged again", async () => {
    await onTestClock(
      Effect.gen(function* () {
        let attempts = 0
        let judged = 0
        const again = (outcome: Attempted<string>) => {
          judged++
          return !outcome.ok
        }
        const fiber = yield* Effect.fork(retrying(() => Promise.resolve(`try ${++attempts}`), again, Schedule.spaced(Duration.seconds(1)), { ok: false, error: new Boom("seen") }))
        yield* settle
        expect(attempts).toBe(0)
        yield* TestClock.adjust(Duration.seconds(1))
        expect(yield* Fiber.join(fiber)).toBe("try 1")
        expect(judged).toBe(1)
      })
    )
  })

  it("tryThenRetry: a first attempt that needs no other is the only one; one that does is followed by the schedule's, the last error unwrapped", async () => {
    let calls = 0
    expect(await tryThenRetry(() => Promise.resolve(++calls), (outcome) => !outcome.ok, Schedule.recurs(5))).toBe(1)
    expect(calls).toBe(1)
    let failures = 0
    const rejected = await tryThenRetry(() => Promise.reject(new Boom(`try ${++failures}`)), (outcome) => !outcome.ok, Schedule.recurs(2)).catch((e: unknown) => e)
    expect(rejected).toBeInstanceOf(Boom)
    expect((rejected as Boom).message).toBe("try 3")
    // A predicate that throws is a defect, reported as itself, not as an abort.
    const defect = await tryThenRetry(() => Promise.resolve(1), (outcome) => {
      if (outcome.ok && ++calls > 2) throw new Boom("predicate")
      return true
    }, Schedule.recurs(5)).catch((e: unknown) => e)
    expect(defect).toBeInstanceOf(Boom)
    expect(defect).not.toBeInstanceOf(RetryAborted)
  })
})
