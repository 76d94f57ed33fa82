/**
 * The five nack backoff policies with codeQ's defaults (base 5 s, cap 900 s), attempts 1..10,
 * with the random source pinned so every delay is an exact number.
 */
import { describe, expect, it } from "vitest"
import {
  BACKOFF_POLICIES,
  DEFAULT_BACKOFF,
  backoffSeconds,
  type BackoffPolicy,
  type BackoffSettings
} from "../src/domain/backoff.js"

const settings = (policy: BackoffPolicy): BackoffSettings => ({ policy, baseSeconds: 5, capSeconds: 900 })
const ATTEMPTS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] as const

/** Delays for attempts 1..10, rounded to 9 decimals so 0.999-based values compare exactly. */
const delays = (policy: BackoffPolicy, random: () => number): ReadonlyArray<number> =>
  ATTEMPTS.map((attempt) => Number(backoffSeconds(settings(policy), attempt, random).toFixed(9)))

// prettier-ignore
const table: ReadonlyArray<readonly [BackoffPolicy, number, ReadonlyArray<number>]> = [
  //                        attempt:   1       2      3      4      5       6       7       8       9       10
  ["fixed",            0,     [5,      5,     5,     5,     5,      5,      5,      5,      5,      5]],
  ["fixed",            0.5,   [5,      5,     5,     5,     5,      5,      5,      5,      5,      5]],
  ["fixed",            0.999, [5,      5,     5,     5,     5,      5,      5,      5,      5,      5]],
  ["linear",           0,     [5,      10,    15,    20,    25,     30,     35,     40,     45,     50]],
  ["linear",           0.5,   [5,      10,    15,    20,    25,     30,     35,     40,     45,     50]],
  ["linear",           0.999, [5,      10,    15,    20,    25,     30,     35,     40,     45,     50]],
  ["exponential",      0,     [5,      10,    20,    40,    80,     160,    320,    640,    900,    900]],
  ["exponential",      0.5,   [5,      10,    20,    40,    80,     160,    320,    640,    900,    900]],
  ["exponential",      0.999, [5,      10,    20,    40,    80,     160,    320,    640,    900,    900]],
  ["exp_equal_jitter", 0,     [2.5,    5,     10,    20,    40,     80,     160,    320,    450,    450]],
  ["exp_equal_jitter", 0.5,   [3.75,   7.5,   15,    30,    60,     120,    240,    480,    675,    675]],
  ["exp_equal_jitter", 0.999, [4.9975, 9.995, 19.99, 39.98, 79.96,  159.92, 319.84, 639.68, 899.55, 899.55]],
  ["exp_full_jitter",  0,     [0,      0,     0,     0,     0,      0,      0,      0,      0,      0]],
  ["exp_full_jitter",  0.5,   [2.5,    5,     10,    20,    40,     80,     160,    320,    450,    450]],
  ["exp_full_jitter",  0.999, [4.995,  9.99,  19.98, 39.96, 79.92,  159.84, 319.68, 639.36, 899.1,  899.1]]
]

describe("backoffSeconds with base 5 s and cap 900 s", () => {
  it("has a row for each of the five policies", () => {
    expect(new Set(table.map(([policy]) => policy))).toEqual(new Set(BACKOFF_POLICIES))
    expect(BACKOFF_POLICIES).toHaveLength(5)
  })

  it.each(table)("gives %s delays for attempts 1..10 when random() is %s", (policy, r, expected) => {
    expect(delays(policy, () => r)).toEqual(expected)
  })

  it.each(["fixed", "linear", "exponential"] as const)("never draws a random number for %s", (policy) => {
    let draws = 0
    const random = () => {
      draws++
      return 0.5
    }
    for (const attempt of ATTEMPTS) backoffSeconds(settings(policy), attempt, random)
    expect(draws).toBe(0)
  })

  it.each(["exp_equal_jitter", "exp_full_jitter"] as const)("draws one random number per delay for %s", (policy) => {
    let draws = 0
    const random = () => {
      draws++
      return 0.5
    }
    for (const attempt of ATTEMPTS) backoffSeconds(settings(policy), attempt, random)
    expect(draws).toBe(ATTEMPTS.length)
  })

  it("caps exponential growth at 900 s from attempt 9 on, however large the attempt", () => {
    const exponential = settings("exponential")
    expect(backoffSeconds(exponential, 8)).toBe(640)
    expect(backoffSeconds(exponential, 9)).toBe(900)
    expect(backoffSeconds(exponential, 50)).toBe(900)
    expect(backoffSeconds(exponential, 5000)).toBe(900)
  })

  it("caps linear growth at 900 s from attempt 180 on", () => {
    const linear = settings("linear")
    expect(backoffSeconds(linear, 179)).toBe(895)
    expect(backoffSeconds(linear, 180)).toBe(900)
    expect(backoffSeconds(linear, 181)).toBe(900)
  })

  it("caps a fixed delay whose base exceeds the cap", () => {
    expect(backoffSeconds({ policy: "fixed", baseSeconds: 1000, capSeconds: 900 }, 1)).toBe(900)
  })

  it.each(["exp_equal_jitter", "exp_full_jitter"] as const)(
    "keeps %s between 0 and the 900 s cap for attempts far past the cap",
    (policy) => {
      expect(backoffSeconds(settings(policy), 5000, () => 0.999)).toBeLessThan(900)
      expect(backoffSeconds(settings(policy), 5000, () => 0.999)).toBeGreaterThan(0)
    }
  )

  it.each([
    [0, 1, 5],
    [-3, 1, 5],
    [1.9, 1, 5],
    [2.9, 2, 10]
  ])("treats attempt %s like attempt %s (%s s) for exponential", (attempt, _like, expected) => {
    expect(backoffSeconds(settings("exponential"), attempt)).toBe(expected)
  })

  it("defaults to full jitter with base 5 s and cap 900 s", () => {
    expect(DEFAULT_BACKOFF).toEqual({ policy: "exp_full_jitter", baseSeconds: 5, capSeconds: 900 })
  })
})
