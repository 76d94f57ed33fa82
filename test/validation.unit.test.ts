/**
 * Input rules (each check returns the first broken rule as data, naming `field` and `rule`) and
 * task ids (RFC 4122 version 5 UUIDs for idempotency keys).
 */
import { describe, expect, it } from "vitest"
import {
  IDEMPOTENCY_NAMESPACE,
  hashIdempotencyKey,
  idempotentTaskId,
  newTaskId,
  uuidV5
} from "../src/domain/ids.js"
import {
  MAX_WEBHOOK_LENGTH,
  checkCommand,
  checkIntRange,
  checkNotAfter,
  checkNumberRange,
  checkPayload,
  checkShortString,
  checkTaskId,
  checkTenant,
  checkTimestamp,
  checkWebhook,
  checkWorkerId,
  firstIssue,
  type ValidationIssue
} from "../src/domain/validation.js"
import { MAX_REDELIVERY_DELAY_MS, MAX_TIMER_MS, redeliveryDelayMs, timerDelayMs } from "../src/domain/delays.js"

/** The field and rule of an issue, or undefined when the value is valid. */
const ruleOf = (issue: ValidationIssue | undefined) => (issue === undefined ? undefined : { field: issue.field, rule: issue.rule })

describe("checkTenant", () => {
  it.each(["acme", "a1", "team-42", "x-"])("accepts %j", (tenant) => {
    expect(checkTenant(tenant)).toBeUndefined()
  })

  it("accepts a 63-character tenant", () => {
    expect(checkTenant(`a${"b".repeat(62)}`)).toBeUndefined()
  })

  it.each([
    ["a single character", "a"],
    ["an uppercase letter", "Acme"],
    ["a leading digit", "1acme"],
    ["a leading hyphen", "-acme"],
    ["an underscore", "acme_corp"],
    ["a dot (a subject token separator)", "acme.corp"],
    ["a NATS wildcard", "acme*"],
    ["64 characters", `a${"b".repeat(63)}`],
    ["an empty string", ""],
    ["a number", 42],
    ["undefined", undefined]
  ])("rejects %s under field tenant, rule pattern", (_label, tenant) => {
    expect(ruleOf(checkTenant(tenant))).toEqual({ field: "tenant", rule: "pattern" })
  })

  it("names the field it is given", () => {
    expect(ruleOf(checkTenant("Bad", "tenantId"))).toEqual({ field: "tenantId", rule: "pattern" })
  })
})

describe("checkCommand", () => {
  it.each(["resize", "Encode_V2-x", "a", "9"])("accepts %j", (command) => {
    expect(checkCommand(command)).toBeUndefined()
  })

  it("accepts a 64-character command", () => {
    expect(checkCommand("c".repeat(64))).toBeUndefined()
  })

  it.each([
    ["an empty string", ""],
    ["65 characters", "c".repeat(65)],
    ["a dot (a subject token separator)", "image.resize"],
    ["a space", "image resize"],
    ["a NATS wildcard", ">"],
    ["null", null]
  ])("rejects %s under field command, rule pattern", (_label, command) => {
    expect(ruleOf(checkCommand(command))).toEqual({ field: "command", rule: "pattern" })
  })
})

describe("checkTaskId", () => {
  it.each(["0b7e3c1a-6f2d-4c8e-9a1b-3d5f7e9c2a4b", "00000000-0000-0000-0000-000000000000"])("accepts %j", (id) => {
    expect(checkTaskId(id)).toBeUndefined()
  })

  it.each([
    ["uppercase hex", "0B7E3C1A-6F2D-4C8E-9A1B-3D5F7E9C2A4B"],
    ["no hyphens", "0b7e3c1a6f2d4c8e9a1b3d5f7e9c2a4b"],
    ["braces", "{0b7e3c1a-6f2d-4c8e-9a1b-3d5f7e9c2a4b}"],
    ["a missing digit", "0b7e3c1a-6f2d-4c8e-9a1b-3d5f7e9c2a4"],
    ["a non-hex digit", "0b7e3c1a-6f2d-4c8e-9a1b-3d5f7e9c2a4g"],
    ["a number", 7]
  ])("rejects %s under field id, rule uuid", (_label, id) => {
    expect(ruleOf(checkTaskId(id))).toEqual({ field: "id", rule: "uuid" })
  })
})

describe("checkWorkerId", () => {
  it.each(["worker-1", "host.example:4242@pod_7"])("accepts %j", (id) => {
    expect(checkWorkerId(id)).toBeUndefined()
  })

  it("accepts a 128-character worker id", () => {
    expect(checkWorkerId("w".repeat(128))).toBeUndefined()
  })

  it.each([
    ["an empty string", ""],
    ["129 characters", "w".repeat(129)],
    ["a space", "worker 1"],
    ["a slash", "pod/1"],
    ["a boolean", true]
  ])("rejects %s under field workerId, rule pattern", (_label, id) => {
    expect(ruleOf(checkWorkerId(id))).toEqual({ field: "workerId", rule: "pattern" })
  })
})

describe("checkWebhook", () => {
  it.each(["https://example.com/hook", "http://localhost:8080/callback?task=1", "https://user:pass@example.com:8443/a/b#frag"])(
    "accepts %j",
    (url) => {
      expect(checkWebhook(url)).toBeUndefined()
    }
  )

  it(`accepts a URL of exactly ${MAX_WEBHOOK_LENGTH} characters`, () => {
    const url = `https://example.com/${"p".repeat(MAX_WEBHOOK_LENGTH - "https://example.com/".length)}`
    expect(url).toHaveLength(MAX_WEBHOOK_LENGTH)
    expect(checkWebhook(url)).toBeUndefined()
  })

  it.each([
    ["an empty string", ""],
    ["a relative path", "/hooks/1"],
    ["no scheme", "example.com/hook"],
    ["an ftp URL", "ftp://example.com/hook"],
    ["a javascript: URL", "javascript:alert(1)"],
    ["a file URL", "file:///etc/passwd"],
    ["text that is not a URL", "not a url"],
    ["a URL one character over the limit", `https://example.com/${"p".repeat(MAX_WEBHOOK_LENGTH - "https://example.com/".length + 1)}`],
    ["a number", 80]
  ])("rejects %s under field webhook, rule url", (_label, url) => {
    expect(ruleOf(checkWebhook(url))).toEqual({ field: "webhook", rule: "url" })
  })
})

describe("checkTimestamp", () => {
  it.each([
    "2026-01-02T03:04:05Z",
    "2026-01-02T03:04Z",
    "2026-01-02T03:04:05.123Z",
    "2026-01-02T03:04:05.123456789+02:00",
    "2026-02-28T23:59:59-05:30",
    "2028-02-29T00:00:00Z"
  ])("accepts %j", (value) => {
    expect(checkTimestamp(value, "runAt")).toBeUndefined()
  })

  it.each([
    ["a date without a time", "2026-01-02"],
    ["a time without a zone", "2026-01-02T03:04:05"],
    ["a space instead of T", "2026-01-02 03:04:05Z"],
    ["a month 13", "2026-13-02T03:04:05Z"],
    ["an hour 25", "2026-01-02T25:00:00Z"],
    ["a minute 60", "2026-01-02T03:60:00Z"],
    ["epoch milliseconds", 1767323045000],
    ["a Date object", new Date("2026-01-02T03:04:05Z")],
    ["an RFC 2822 date", "Fri, 02 Jan 2026 03:04:05 GMT"]
  ])("rejects %s under the given field, rule timestamp", (_label, value) => {
    expect(ruleOf(checkTimestamp(value, "runAt"))).toEqual({ field: "runAt", rule: "timestamp" })
  })

  // Date.parse rolls these over into the next month (Feb 30 → Mar 2), so a runAt would silently
  // land on another day; a calendar-invalid date is not an ISO 8601 timestamp.
  it("rejects calendar-invalid dates (February 30, February 29 of 2026, April 31) under rule timestamp", () => {
    const values = ["2026-02-30T00:00:00Z", "2026-02-29T00:00:00Z", "2026-04-31T00:00:00Z"]
    expect(values.map((value) => ruleOf(checkTimestamp(value, "runAt")))).toEqual(
      values.map(() => ({ field: "runAt", rule: "timestamp" }))
    )
  })
})

describe("checkNotAfter", () => {
  const now = Date.parse("2026-01-01T00:00:00Z")
  const year = 366 * 86_400

  it("accepts a time in the past, now, and exactly the longest delay ahead", () => {
    for (const value of ["1970-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "2027-01-02T00:00:00Z"])
      expect(checkNotAfter(value, "runAt", year, now), value).toBeUndefined()
  })

  it("refuses a time beyond the longest delay, up to the far future that used to overflow the server's nak delay", () => {
    for (const value of ["2027-01-02T00:00:01Z", "2318-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
      expect(ruleOf(checkNotAfter(value, "runAt", year, now)), value).toEqual({ field: "runAt", rule: "range" })
  })
})

describe("delay bounds", () => {
  it("keeps timer delays within what Node honours, NaN and negatives as 0", () => {
    expect(timerDelayMs(1_500.4)).toBe(1_500)
    expect(timerDelayMs(-5)).toBe(0)
    expect(timerDelayMs(Number.NaN)).toBe(0)
    expect(timerDelayMs(Date.parse("9999-12-31T00:00:00Z"))).toBe(MAX_TIMER_MS)
    expect(timerDelayMs(Number.POSITIVE_INFINITY)).toBe(MAX_TIMER_MS)
  })

  it("keeps redelivery delays below the server's int64 nanoseconds, far future included", () => {
    expect(redeliveryDelayMs(30_000)).toBe(30_000)
    expect(redeliveryDelayMs(Date.parse("9999-12-31T00:00:00Z"))).toBe(MAX_REDELIVERY_DELAY_MS)
    expect(MAX_REDELIVERY_DELAY_MS * 1e6).toBeLessThan(2 ** 63)
    expect(MAX_REDELIVERY_DELAY_MS).toBeGreaterThan(366 * 86_400_000)
  })
})

describe("checkPayload", () => {
  it("returns the JSON of a payload within the limit", () => {
    expect(checkPayload({ width: 64, tags: ["a"] }, 1024)).toEqual({ json: '{"width":64,"tags":["a"]}' })
  })

  it("serialises a missing payload as null", () => {
    expect(checkPayload(undefined, 1024)).toEqual({ json: "null" })
  })

  it("accepts a payload of exactly the limit and rejects one byte more under rule max_bytes", () => {
    const payload = "x".repeat(8) // "xxxxxxxx" with its quotes is 10 bytes
    expect(checkPayload(payload, 10)).toEqual({ json: `"${payload}"` })
    expect(checkPayload(payload, 9)).toMatchObject({ field: "payload", rule: "max_bytes" })
  })

  it("counts UTF-8 bytes, not characters", () => {
    // "é" is one character but two bytes: the JSON string "éé" is 2 + 4 = 6 bytes.
    expect(checkPayload("éé", 6)).toEqual({ json: '"éé"' })
    expect(checkPayload("éé", 5)).toMatchObject({ field: "payload", rule: "max_bytes" })
  })

  it.each([
    ["a circular object", (() => {
      const node: { self?: unknown } = {}
      node.self = node
      return node
    })()],
    ["a BigInt", 10n],
    ["a function", () => 1],
    ["a symbol", Symbol("s")]
  ])("rejects %s under rule json", (_label, payload) => {
    expect(checkPayload(payload, 1024, "body")).toMatchObject({ field: "body", rule: "json" })
  })
})

describe("checkIntRange", () => {
  it.each([1, 5, 10])("accepts %s within 1..10", (value) => {
    expect(checkIntRange(value, "maxAttempts", 1, 10)).toBeUndefined()
  })

  it.each([
    ["below the minimum", 0],
    ["above the maximum", 11],
    ["a fraction", 1.5],
    ["NaN", Number.NaN],
    ["Infinity", Number.POSITIVE_INFINITY],
    ["a numeric string", "5"],
    ["null", null]
  ])("rejects %s under the given field, rule range", (_label, value) => {
    expect(ruleOf(checkIntRange(value, "maxAttempts", 1, 10))).toEqual({ field: "maxAttempts", rule: "range" })
  })
})

describe("checkNumberRange", () => {
  it.each([0, 0.5, 30, 3600])("accepts %s within 0..3600", (value) => {
    expect(checkNumberRange(value, "delaySeconds", 0, 3600)).toBeUndefined()
  })

  it.each([
    ["below the minimum", -0.001],
    ["above the maximum", 3600.5],
    ["NaN", Number.NaN],
    ["Infinity", Number.POSITIVE_INFINITY],
    ["a numeric string", "30"]
  ])("rejects %s under the given field, rule range", (_label, value) => {
    expect(ruleOf(checkNumberRange(value, "delaySeconds", 0, 3600))).toEqual({ field: "delaySeconds", rule: "range" })
  })
})

describe("checkShortString", () => {
  it("accepts a non-empty string up to the maximum length", () => {
    expect(checkShortString("r".repeat(16), "reason", 16)).toBeUndefined()
  })

  it.each([
    ["an empty string", ""],
    ["a string over the maximum", "r".repeat(17)],
    ["a number", 1]
  ])("rejects %s under the given field, rule length", (_label, value) => {
    expect(ruleOf(checkShortString(value, "reason", 16))).toEqual({ field: "reason", rule: "length" })
  })
})

describe("firstIssue", () => {
  it("returns the first broken rule in the order the checks are given", () => {
    const issue = firstIssue(checkTenant("acme"), checkCommand("a.b"), checkTaskId("nope"))
    expect(ruleOf(issue)).toEqual({ field: "command", rule: "pattern" })
  })

  it("returns undefined when every check passes", () => {
    expect(firstIssue(checkTenant("acme"), checkCommand("resize"))).toBeUndefined()
  })
})

const V5 = /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

describe("uuidV5", () => {
  it("matches the RFC 4122 vector for www.example.com in the DNS namespace", () => {
    expect(uuidV5("www.example.com", "6ba7b810-9dad-11d1-80b4-00c04fd430c8")).toBe("2ed6657d-e927-568b-95e1-2665a8aea6a2")
  })

  it("uses codeQ's idempotency namespace by default", () => {
    expect(uuidV5("key")).toBe(uuidV5("key", IDEMPOTENCY_NAMESPACE))
    expect(uuidV5("key")).not.toBe(uuidV5("key", "6ba7b810-9dad-11d1-80b4-00c04fd430c8"))
  })
})

describe("idempotentTaskId", () => {
  it("gives the same id for the same tenant and key", () => {
    expect(idempotentTaskId("acme", "order-17")).toBe(idempotentTaskId("acme", "order-17"))
  })

  it("gives different ids for the same key under different tenants", () => {
    expect(idempotentTaskId("acme", "order-17")).not.toBe(idempotentTaskId("globex", "order-17"))
  })

  it("gives different ids for different keys under one tenant", () => {
    expect(idempotentTaskId("acme", "order-17")).not.toBe(idempotentTaskId("acme", "order-18"))
  })

  it("keeps the tenant and key apart, so moving a character across the boundary changes the id", () => {
    expect(idempotentTaskId("acme-a", "b")).not.toBe(idempotentTaskId("acme", "-ab"))
  })

  it("is a version 5, RFC 4122 variant UUID that passes checkTaskId", () => {
    const id = idempotentTaskId("acme", "order-17")
    expect(id).toMatch(V5)
    expect(checkTaskId(id)).toBeUndefined()
  })
})

describe("hashIdempotencyKey and newTaskId", () => {
  it("hashes a key with SHA-256 as lowercase hex", () => {
    expect(hashIdempotencyKey("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
  })

  it("creates fresh task ids that pass checkTaskId", () => {
    const [a, b] = [newTaskId(), newTaskId()]
    expect(a).not.toBe(b)
    expect(checkTaskId(a)).toBeUndefined()
    expect(checkTaskId(b)).toBeUndefined()
  })
})
