/**
 * The compiled fast path of schema decoding (src/domain/fastDecode.ts) against Effect's own
 * decoder: every event schema compiles, a valid body comes back as itself (the fast path, not
 * Effect's copy), and for bodies broken every way one field at a time — each field missing, each
 * set to each value of a palette, extra keys, other prototypes, non-objects — both accept and
 * refuse the same inputs, with the same value or the same error.
 */
import { Either, ParseResult, Schema, type SchemaAST } from "effect"
import { describe, expect, it } from "vitest"
import { TaskEvent } from "../src/domain/events.js"
import { eventDecoderOf } from "../src/domain/eventDecode.js"
import { compiles, fastDecoder } from "../src/domain/fastDecode.js"

const AT = "2026-11-30T12:00:00.000Z"
const base = { v: 1, taskId: "0194f3a2-7c1e-7d3a-9b1e-2f4a5c6d7e8f", tenant: "acme", at: AT }

/** A valid body of every event type, each optional field present. */
const VALID: Record<string, Record<string, unknown>> = {
  TaskCreated: { ...base, type: "TaskCreated", command: "send", payload: { to: "x" }, priority: 3, webhook: "http://127.0.0.1/h", maxAttempts: 5, runAt: AT, leaseSeconds: 30, idempotencyKeyHash: "ab" },
  TaskClaimed: { ...base, type: "TaskClaimed", attempt: 1, workerId: "w", leaseUntil: AT, leaseHandle: "$JS.ACK.x" },
  TaskHeartbeat: { ...base, type: "TaskHeartbeat", workerId: "w", leaseUntil: AT },
  TaskAbandoned: { ...base, type: "TaskAbandoned", workerId: "w" },
  TaskNacked: { ...base, type: "TaskNacked", workerId: "w", reason: "busy", delaySeconds: 1.5 },
  TaskLeaseExpired: { ...base, type: "TaskLeaseExpired", workerId: "w", attempt: 2 },
  TaskCompleted: { ...base, type: "TaskCompleted", workerId: "w", result: { ok: true }, artifacts: [{ url: "u" }, 1, null] },
  TaskFailed: { ...base, type: "TaskFailed", workerId: "w", error: "boom", result: [1], artifacts: [] },
  TaskDeadLettered: { ...base, type: "TaskDeadLettered", reason: "max attempts" },
  TaskRequeued: { ...base, type: "TaskRequeued", reason: "operator" },
  TaskCancelled: { ...base, type: "TaskCancelled", reason: "operator" },
  TaskPurged: { ...base, type: "TaskPurged", reason: "operator" },
  WebhookDelivered: { ...base, type: "WebhookDelivered", attempt: 1, statusCode: 204 },
  WebhookFailed: { ...base, type: "WebhookFailed", attempt: 2, statusCode: 503, error: "status", final: false },
  TaskRejected: { ...base, type: "TaskRejected", field: "payload", rule: "too large" }
}

const PALETTE: ReadonlyArray<unknown> = [undefined, null, 0, 1, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, "", "x", true, false, [], [1, "a", null], [undefined], {}, { a: 1 }]

const members = TaskEvent.members.map((member) => [member.fields.type.literals[0], member as unknown as Schema.Schema<unknown, unknown>] as const)

/** Every way to break `body` one field at a time, and a few whole-value ones. */
const variants = (body: Record<string, unknown>): ReadonlyArray<unknown> => {
  const out: Array<unknown> = [body, { ...body, extra: 1 }, { ...body, constructor: "c", toString: 1 }, JSON.parse(`{"__proto__": {"v": 1}, ${JSON.stringify(body).slice(1)}`)]
  for (const key of Object.keys(body)) {
    const { [key]: _dropped, ...without } = body
    out.push(without)
    for (const value of PALETTE) out.push({ ...body, [key]: value })
  }
  out.push(Object.assign(Object.create(null) as object, body), Object.assign(Object.create({ inherited: 1 }) as object, body))
  out.push(null, undefined, "body", 7, [], [body])
  return out
}

const same = (input: unknown, fast: Either.Either<unknown, ParseResult.ParseError>, effect: Either.Either<unknown, ParseResult.ParseError>) => {
  expect(Either.isRight(fast), `accepted alike: ${JSON.stringify(input)}`).toBe(Either.isRight(effect))
  if (Either.isRight(fast) && Either.isRight(effect)) expect(fast.right).toStrictEqual(effect.right)
  if (Either.isLeft(fast) && Either.isLeft(effect)) expect(ParseResult.TreeFormatter.formatErrorSync(fast.left)).toBe(ParseResult.TreeFormatter.formatErrorSync(effect.left))
}

describe("fastDecoder", () => {
  it("compiles every event schema", () => {
    expect(members.filter(([, schema]) => !compiles(schema)).map(([type]) => type)).toEqual([])
    expect(members.map(([type]) => type).sort()).toEqual(Object.keys(VALID).sort())
  })

  it("hands a valid body back as itself: the compiled path, not Effect's copy", () => {
    const trimmed: Array<string> = []
    for (const [type, schema] of members) {
      const body = VALID[type]!
      const decoded = eventDecoderOf(type)?.(body)
      expect(decoded !== undefined && Either.isRight(decoded) && decoded.right === body, type).toBe(true)
      const ast = schema.ast as SchemaAST.TypeLiteral
      const optional = new Set(ast.propertySignatures.filter((ps) => ps.isOptional).map((ps) => ps.name))
      const required = Object.fromEntries(Object.entries(body).filter(([key]) => !optional.has(key)))
      if (Object.keys(required).length < Object.keys(body).length) trimmed.push(type)
      const minimal = eventDecoderOf(type)?.(required)
      expect(minimal !== undefined && Either.isRight(minimal) && minimal.right === required, `${type} without its optional fields`).toBe(true)
    }
    // The types with optional fields were decoded without them too.
    expect(trimmed.sort()).toEqual(["TaskCompleted", "TaskCreated", "TaskFailed", "WebhookFailed"])
  })

  it("accepts and refuses what Effect's decoder does, with the same value or error", () => {
    let compared = 0
    for (const [type, schema] of members) {
      const fast = fastDecoder(schema)
      const effect = Schema.decodeUnknownEither(schema)
      for (const input of variants(VALID[type]!)) {
        same(input, fast(input), effect(input))
        compared++
      }
    }
    expect(compared).toBeGreaterThan(2_000)
  })

  it("decodes the shapes it compiles, nested, as Effect does", () => {
    const schema = Schema.Struct({
      inner: Schema.Struct({ n: Schema.Number.pipe(Schema.int()), tag: Schema.optional(Schema.Literal("a", "b")) }),
      list: Schema.Array(Schema.Struct({ s: Schema.String })),
      flag: Schema.optional(Schema.Boolean),
      maybe: Schema.Union(Schema.String, Schema.Null)
    })
    expect(compiles(schema)).toBe(true)
    const fast = fastDecoder(schema)
    const effect = Schema.decodeUnknownEither(schema)
    const inputs: ReadonlyArray<unknown> = [
      { inner: { n: 1 }, list: [], maybe: null },
      { inner: { n: 1, tag: "a", extra: true }, list: [{ s: "x" }, { s: "y", more: 1 }], flag: false, maybe: "m" },
      { inner: { n: 1.5 }, list: [], maybe: null },
      { inner: { n: 1, tag: "c" }, list: [], maybe: null },
      { inner: { n: 1 }, list: [{ s: 1 }], maybe: null },
      { inner: { n: 1 }, list: [], maybe: 0 },
      { inner: [], list: [], maybe: null },
      { inner: { n: 1 }, list: {}, maybe: null }
    ]
    for (const input of inputs) same(input, fast(input), effect(input))
  })

  it("does not take a name Object.prototype has for a field the input holds", () => {
    // Without an own-property test, `toString` would be found on the prototype, and the extra key
    // would make up the count of fields present: the input itself, `b` included, handed back.
    const schema = Schema.Struct({ a: Schema.Number, toString: Schema.optional(Schema.Unknown) })
    const fast = fastDecoder(schema)
    const effect = Schema.decodeUnknownEither(schema)
    for (const input of [{ a: 1, b: 2 }, { a: 1 }, { a: 1, toString: "s" }]) same(input, fast(input), effect(input))
  })

  it("leaves to Effect what it does not compile", () => {
    expect(compiles(Schema.Struct({}))).toBe(false)
    expect(compiles(Schema.NumberFromString)).toBe(false)
    expect(compiles(Schema.Struct({ a: Schema.Date }))).toBe(false)
    expect(compiles(Schema.Union(Schema.Struct({ a: Schema.String }), Schema.Struct({ b: Schema.String })))).toBe(false)
    expect(compiles(TaskEvent)).toBe(false)
    const decode = fastDecoder(Schema.Struct({ n: Schema.NumberFromString }))
    expect(decode({ n: "2" })).toStrictEqual(Either.right({ n: 2 }))
    expect(Either.isLeft(decode({ n: 2 }))).toBe(true)
  })
})
