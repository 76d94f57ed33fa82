/**
 * Input fuzzing (issue 13): fast-check generates well over 10^4 create, claim, heartbeat, nack and
 * result requests with hostile values — unicode and control characters, lone surrogates, subject
 * wildcards and dots, `$JS.API.>`, huge and non-finite numbers, deep nesting, `__proto__` and
 * `constructor` keys, duplicate JSON keys, invalid UTF-8, oversize bodies, wrong Content-Length —
 * and sends them over HTTP (raw keep-alive requests to a real server on a private nats-server)
 * and through the SDK. Each case is built valid, or broken in one known place, so its answer is
 * known: a 2xx that echoes what was sent, or a 4xx JSON error naming the field at fault over HTTP;
 * a result or a typed error naming the field from the SDK. Never a 5xx, an untyped error or a
 * hang. Afterwards the broker still serves, no event was quarantined, the log audits clean, and
 * every subject in the namespace's streams and buckets fits the codeq subject scheme.
 */
import { randomUUID } from "node:crypto"
import { Agent, request } from "node:http"
import { connect as netConnect } from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { startBroker, type RunningBroker } from "../src/broker.js"
import { COMMAND_PATTERN, MAX_ERROR_LENGTH, MAX_REASON_LENGTH, TENANT_PATTERN, UUID_PATTERN } from "../src/domain/validation.js"
import { startHttpServer, type RunningHttpServer } from "../src/http/index.js"
import { replayLog, wireTargetOf, type Problem } from "../src/replay/index.js"
import { CodeqClient } from "../src/sdk/client.js"
import { complete, fail, nack } from "../src/sdk/worker.js"
import { ClaimCapacity, InvalidTransition, LeaseLost, TaskNotFound, ValidationError } from "../src/tasks/errors.js"
import { DEFAULT_LIMITS } from "../src/tasks/limits.js"
import { KV_BARRIER_KEY } from "../src/eventlog/kv.js"
import { OPEN_INDEX_READY_KEY } from "../src/eventlog/openTasks.js"
import { claimsStream, deadLetterBucket, eventsStream, openTaskBucket, projectionsBucket, taskStateBucket, webhooksStream } from "../streams/definitions.js"
import { brokerConfig, freshNaming, projectionsCaughtUp, useNatsServer, waitFor } from "./support/harness.js"
import { STATIC_TOKENS } from "./support/jwks.js"

const nats = useNatsServer()
const naming = freshNaming()
const BODY_LIMIT = 64 * 1024
const PAYLOAD_LIMIT = 16 * 1024
const MAX_DELAY = DEFAULT_LIMITS.maxDelaySeconds
const MAX_LEASE = DEFAULT_LIMITS.maxLeaseSeconds
/** Requests of one fast-check run, sent at once. */
const BATCH = 20
const REQUEST_DEADLINE_MS = 15_000

const PRODUCER = STATIC_TOKENS.acmeProducer.token
const WORKER = STATIC_TOKENS.acmeWorker.token
/** Commands most valid creates use, so that claims find work. */
const HOT_COMMANDS = ["fz-a", "fz_B", "FZ-c9"] as const

// ---------------------------------------------------------------------------------------------
// Hostile values

const HOSTILE_UNITS = [
  "\u0000", "\u0001", "\u0007", "\u001b", "\u001f", "\u007f", "\u0085", "\u00a0", "\u2028", "\u2029", "\ufeff", "\ufffd", "\ufffe",
  "\ud800", "\udbff", "\udc00", "\udfff", "\u202e", "\u200b", "*", ">", ".", "$", "\\", "\"", "/", "%", "\n", "\r", "\t", " ", "€", "😀", "𝕏", "ß", "İ"
]
const hostileUnit = fc.oneof(fc.constantFrom(...HOSTILE_UNITS), fc.string({ unit: "binary", minLength: 1, maxLength: 1 }))
const SPECIAL_STRINGS = [
  "$JS.API.>", "$JS.API.STREAM.DELETE.CODEQ_EVENTS", "$SYS.>", "$KV.CODEQ_TASKS.>", "codeq.evt.>", "codeq.claim.*.*.*", "*", ">", "a.b", "a.*", "a.>", "..", ".",
  "__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "", " ", "\u0000", "\ud800", "null", "undefined", "NaN", "%00", "%2e%2e%2f", "../../etc/passwd",
  "<script>alert(1)</script>", "' OR 1=1 --", "${7*7}", "{{7*7}}"
]
const hostileString = fc.oneof(fc.string({ unit: hostileUnit, maxLength: 24 }), fc.constantFrom(...SPECIAL_STRINGS))
const hasLoneSurrogate = (s: string) => /\p{Cs}/u.test(s)

/** Raw JSON number texts, including ones JSON.parse turns into Infinity, -0 or a rounded value. */
const numberText = fc.oneof(
  fc.integer().map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => JSON.stringify(n)),
  fc.constantFrom("1e400", "-1e400", "1e308", "-1e308", "-0", "0.0", "1E2", "123456789012345678901234567890", "4.9e-324", "9007199254740993", "1e-400", "-0.0e-0")
)

/** A JSON value as text, built by hand so objects can repeat keys and use `__proto__`. */
type Tree =
  | { readonly k: "str"; readonly v: string }
  | { readonly k: "num"; readonly text: string }
  | { readonly k: "lit"; readonly text: "true" | "false" | "null" }
  | { readonly k: "arr"; readonly items: ReadonlyArray<Tree> }
  | { readonly k: "obj"; readonly entries: ReadonlyArray<readonly [string, Tree]> }
  | { readonly k: "deep"; readonly depth: number; readonly open: "[" | "{\"a\":" }

const objectKey = fc.oneof(hostileString, fc.constantFrom("__proto__", "constructor", "prototype", "a", "a", "b"))
const { tree } = fc.letrec<{ tree: Tree }>((tie) => ({
  tree: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.record({ k: fc.constant("str" as const), v: hostileString }),
    fc.record({ k: fc.constant("num" as const), text: numberText }),
    fc.record({ k: fc.constant("lit" as const), text: fc.constantFrom("true" as const, "false" as const, "null" as const) }),
    fc.record({ k: fc.constant("arr" as const), items: fc.array(tie("tree"), { maxLength: 4 }) }),
    fc.record({ k: fc.constant("obj" as const), entries: fc.array(fc.tuple(objectKey, tie("tree")), { maxLength: 4 }) }),
    fc.record({ k: fc.constant("deep" as const), depth: fc.constantFrom(64, 500, 2_000, 20_000), open: fc.constantFrom("[" as const, "{\"a\":" as const) })
  )
}))

const render = (t: Tree): string => {
  switch (t.k) {
    case "str":
      return JSON.stringify(t.v)
    case "num":
    case "lit":
      return t.text
    case "arr":
      return `[${t.items.map(render).join(",")}]`
    case "obj":
      return `{${t.entries.map(([key, value]) => `${JSON.stringify(key)}:${render(value)}`).join(",")}}`
    case "deep":
      return `${t.open.repeat(t.depth)}1${(t.open === "[" ? "]" : "}").repeat(t.depth)}`
  }
}
const isDeep = (t: Tree): boolean => t.k === "deep" || (t.k === "arr" && t.items.some(isDeep)) || (t.k === "obj" && t.entries.some(([, v]) => isDeep(v)))

/** What a JSON value becomes once parsed and serialised again (1e400 → null, duplicate keys → last). */
const normalised = (text: string): string => JSON.stringify(JSON.parse(text))

// ---------------------------------------------------------------------------------------------
// HTTP: raw keep-alive requests

interface Answer {
  readonly status: number
  readonly contentType: string
  readonly text: string
  readonly json: Record<string, unknown> | undefined
}

let port = 0
const agent = new Agent({ keepAlive: true, maxSockets: BATCH })
let sentHttp = 0
let sentSdk = 0
const counts: Record<string, number> = {}
const count = (what: string) => void (counts[what] = (counts[what] ?? 0) + 1)

const parseAnswer = (status: number, contentType: string, text: string): Answer => {
  let json: Record<string, unknown> | undefined
  try {
    const parsed: unknown = JSON.parse(text)
    json = typeof parsed === "object" && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined
  } catch {
    json = undefined
  }
  return { status, contentType, text, json }
}

/** Percent-encodes every byte but unreserved ones and the subject characters `* > $ .`, kept raw. */
const pathSegment = (s: string): string =>
  [...Buffer.from(s, "utf8")].map((b) => (/[A-Za-z0-9\-_~*>$.]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, "0")}`)).join("")

const send = (method: string, path: string, token: string, body: Buffer | undefined, contentType: string | null = "application/json"): Promise<Answer> =>
  new Promise((resolve, reject) => {
    sentHttp++
    const headers: Record<string, string> = { Authorization: `Bearer ${token}` }
    if (body !== undefined) headers["Content-Length"] = String(body.length)
    if (body !== undefined && contentType !== null) headers["Content-Type"] = contentType
    const req = request({ host: "127.0.0.1", port, method, path, agent, headers }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (chunk: Buffer) => chunks.push(chunk))
      res.on("end", () => resolve(parseAnswer(res.statusCode ?? 0, String(res.headers["content-type"] ?? ""), Buffer.concat(chunks).toString("utf8"))))
      res.on("error", reject)
    })
    req.setTimeout(REQUEST_DEADLINE_MS, () => req.destroy(new Error(`no answer within ${REQUEST_DEADLINE_MS} ms (a hang)`)))
    req.on("error", reject)
    req.end(body)
  })

/** Bytes written as they are on a fresh connection; resolves with what came back once the server closes it. */
const sendRaw = (bytes: Buffer, halfClose: boolean): Promise<Answer> =>
  new Promise((resolve, reject) => {
    sentHttp++
    const socket = netConnect(port, "127.0.0.1")
    const chunks: Array<Buffer> = []
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`the server neither answered nor closed within ${REQUEST_DEADLINE_MS} ms (a hang)`))
    }, REQUEST_DEADLINE_MS)
    socket.on("data", (chunk: Buffer) => chunks.push(chunk))
    socket.on("error", () => undefined)
    socket.on("close", () => {
      clearTimeout(timer)
      const text = Buffer.concat(chunks).toString("utf8")
      const head = /^HTTP\/1\.1 (\d{3})[^\r\n]*\r\n([\s\S]*?)\r\n\r\n([\s\S]*)$/.exec(text)
      if (head === null) return resolve({ status: 0, contentType: "", text, json: undefined })
      resolve(parseAnswer(Number(head[1]), /content-type:\s*([^\r\n]*)/i.exec(head[2] ?? "")?.[1] ?? "", head[3] ?? ""))
    })
    socket.write(bytes)
    if (halfClose) socket.end()
  })

/** What a case must get back. `field` is the field a 4xx must name (exactly, or as a prefix of `x[1]` / `x.y`). */
type Expected =
  | { readonly kind: "ok"; readonly check?: (answer: Answer) => string | undefined }
  | { readonly kind: "error"; readonly status: ReadonlyArray<number>; readonly field?: string | ReadonlyArray<string>; readonly rule?: string }
  /** Any well-formed answer: a 2xx, or a 4xx JSON error (naming a field when it is a 400). */
  | { readonly kind: "any" }

const fieldMatches = (actual: unknown, wanted: string | ReadonlyArray<string>): boolean =>
  typeof actual === "string" && (typeof wanted === "string" ? [wanted] : wanted).some((w) => actual === w || actual.startsWith(`${w}[`) || actual.startsWith(`${w}.`))

/** Invariants of every answer, then the case's own expectation; a failure description or undefined. */
const judge = (answer: Answer, expected: Expected, okStatuses: ReadonlyArray<number>): string | undefined => {
  if (answer.status >= 500 || answer.status === 0) return `status ${answer.status}: ${answer.text.slice(0, 300)}`
  if (answer.status >= 400) {
    if (!answer.contentType.startsWith("application/json") || answer.json === undefined || typeof answer.json.error !== "string" || answer.json.error === "")
      return `a ${answer.status} without a JSON error: ${answer.contentType} ${answer.text.slice(0, 200)}`
    if ([400, 413, 415, 431].includes(answer.status) && (typeof answer.json.field !== "string" || answer.json.field === ""))
      return `a ${answer.status} naming no field: ${answer.text.slice(0, 300)}`
  }
  switch (expected.kind) {
    case "any":
      return answer.status < 300 || answer.status >= 400 ? undefined : `status ${answer.status}`
    case "ok":
      if (!okStatuses.includes(answer.status)) return `expected ${okStatuses.join("/")}, got ${answer.status}: ${answer.text.slice(0, 300)}`
      return expected.check?.(answer)
    case "error":
      if (!expected.status.includes(answer.status)) return `expected ${expected.status.join("/")}, got ${answer.status}: ${answer.text.slice(0, 300)}`
      if (expected.field !== undefined && !fieldMatches(answer.json?.field, expected.field)) return `expected field ${String(expected.field)}: ${answer.text.slice(0, 300)}`
      if (expected.rule !== undefined && answer.json?.rule !== expected.rule) return `expected rule ${expected.rule}: ${answer.text.slice(0, 300)}`
      return undefined
  }
}

// ---------------------------------------------------------------------------------------------
// Request bodies: built valid, then broken in at most one known place

/** A body as ordered entries of raw JSON texts, so keys can repeat. */
type Entries = ReadonlyArray<readonly [string, string]>
const renderBody = (entries: Entries): string => `{${entries.map(([key, value]) => `${JSON.stringify(key)}:${value}`).join(",")}}`

type FieldSpec = Readonly<Record<string, { readonly valid: fc.Arbitrary<string>; readonly invalid: fc.Arbitrary<string> }>>

const js = (value: unknown) => JSON.stringify(value)
const hostileCommand = hostileString.filter((s) => !COMMAND_PATTERN.test(s)).map(js)
const notAString = fc.constantFrom("7", "null", "true", "[]", "{}", "1e400")
const commandArb = fc.oneof(fc.constantFrom(...HOT_COMMANDS), fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/))
const intText = (min: number, max: number) => fc.oneof(fc.integer({ min, max }).map(String), fc.constantFrom(`${min}.0`, `${max}`, min === 0 ? "-0" : `${min}`))
const badInt = (min: number, max: number) => fc.constantFrom(String(min - 1), String(max + 1), `${min}.5`, js(String(min)), "1e400", "-1e400", "null", "true", "[1]", "9007199254740993", "1e308")
/** A webhook that resolves nowhere: loopback and private literals, refused before any connection. */
const webhookArb = fc.tuple(fc.constantFrom("http://127.0.0.1:9/", "https://[::1]:9/x/", "http://10.1.2.3/", ""), hostileString).map(([base, tail]) => js(base === "" ? "" : `${base}${tail}`))
const runAtArb = fc.integer({ min: -10 * 365 * 86_400, max: 300 * 86_400 }).map((s) => js(new Date(Date.now() + s * 1000).toISOString()))

const CREATE_FIELDS: FieldSpec = {
  command: { valid: commandArb.map(js), invalid: fc.oneof(hostileCommand, notAString, fc.constant(js("x".repeat(65)))) },
  priority: { valid: intText(0, 9), invalid: badInt(0, 9) },
  webhook: {
    valid: webhookArb,
    invalid: fc.constantFrom(js("ftp://127.0.0.1/x"), js("javascript:alert(1)"), js("not a url"), js("//127.0.0.1/x"), js("file:///etc/passwd"), js("gopher://127.0.0.1:25/"), js(`http://127.0.0.1/${"a".repeat(2040)}`), "7", "null", "{}")
  },
  maxAttempts: { valid: intText(0, 100), invalid: badInt(0, 100) },
  idempotencyKey: {
    valid: fc.tuple(hostileString.filter((s) => !hasLoneSurrogate(s)), fc.uuid()).map(([s, id]) => js(`${s}#${id}`)),
    invalid: fc.constantFrom(js("k".repeat(257)), "5", "null", "[]", js("\ud800"), js("a\udfffb"), js("\udc00\ud800"))
  },
  runAt: {
    valid: fc.oneof(runAtArb, fc.constant(js(""))),
    invalid: fc.constantFrom(js("tomorrow"), js("2026-02-30T00:00:00Z"), js("9999-12-31T00:00:00Z"), js("2024-01-01T00:00:00"), "5", "null", js("+275760-09-13T00:00:00Z"), js("2024-01-01T00:00:00Z\u0000"), js("0000-01-01T00:00:00Z"))
  },
  delaySeconds: { valid: fc.oneof(fc.integer({ min: 0, max: 3_600 }).map(String), fc.double({ min: 0, max: MAX_DELAY, noNaN: true }).map(js)), invalid: fc.constantFrom("-1", String(MAX_DELAY + 1), "1e400", js("5"), "null", "-1e-300", "[]") },
  leaseSeconds: { valid: intText(0, MAX_LEASE), invalid: badInt(0, MAX_LEASE) }
}

const CLAIM_FIELDS: FieldSpec = {
  commands: {
    valid: fc.array(commandArb, { minLength: 1, maxLength: 4 }).map((cs) => js([...cs, HOT_COMMANDS[0]])),
    invalid: fc.oneof(
      fc.array(hostileString.filter((s) => !COMMAND_PATTERN.test(s)), { minLength: 1, maxLength: 3 }).map((cs) => js(["fz-a", ...cs])),
      fc.constantFrom(js([]), js("fz-a"), "null", "7", js([1]), js([null]), js(Array.from({ length: 101 }, (_, i) => `c${i}`)), js(["$JS.API.>"]), js(["*"]), js([">"]), js(["a.b"]))
    )
  },
  leaseSeconds: { valid: intText(0, MAX_LEASE), invalid: badInt(0, MAX_LEASE) },
  waitSeconds: { valid: fc.constantFrom("0", "0.0", "-0"), invalid: fc.constantFrom("-1", "0.5", "1e400", "-1e400", js("0"), "null", "true") }
}

const HEARTBEAT_FIELDS: FieldSpec = { extendSeconds: { valid: intText(0, MAX_LEASE), invalid: badInt(0, MAX_LEASE) } }
const NACK_FIELDS: FieldSpec = {
  delaySeconds: { valid: intText(0, 3_600), invalid: fc.constantFrom("-1", String(MAX_DELAY + 1), "0.5", "1e400", js("5"), "null") },
  reason: { valid: hostileString.map(js), invalid: fc.constantFrom(js("r".repeat(1025)), "7", "null", "[]") }
}

interface BodyCase {
  readonly body: Buffer
  /** null: no Content-Type header at all. */
  readonly contentType: string | null
  /** Where the body is broken, in the order the server checks: undefined when valid. */
  readonly broken: Expected | undefined
  /** The body as the server will read it, when it is valid JSON. */
  readonly parsed: Record<string, unknown> | undefined
  readonly note: string
}

type Mutation =
  | { readonly m: "none" }
  | { readonly m: "invalid"; readonly field: string; readonly value: string }
  | { readonly m: "dup-valid-last"; readonly field: string; readonly bad: string; readonly good: string }
  | { readonly m: "dup-invalid-last"; readonly field: string; readonly bad: string; readonly good: string }
  | { readonly m: "unknown"; readonly key: string; readonly value: string }
  | { readonly m: "not-object"; readonly text: string }
  | { readonly m: "bad-json"; readonly text: string }
  | { readonly m: "bad-utf8"; readonly bytes: ReadonlyArray<number> }
  | { readonly m: "content-type"; readonly contentType: string | null }
  | { readonly m: "oversize-body" }

const KNOWN_KEYS = new Set(["command", "payload", "priority", "webhook", "maxAttempts", "idempotencyKey", "runAt", "delaySeconds", "leaseSeconds", "commands", "waitSeconds", "extendSeconds", "reason", "status", "result", "error", "artifacts", "workerId"])

const mutationOf = (fields: FieldSpec): fc.Arbitrary<Mutation> => {
  const names = Object.keys(fields)
  // A spec without fields (transport mutations only) still needs an arbitrary to chain on.
  const field = fc.constantFrom(...(names.length > 0 ? names : ["none"]))
  const invalidFor = field.chain((f) => fc.tuple((fields[f] as FieldSpec[string]).invalid, (fields[f] as FieldSpec[string]).valid).map(([value, good]) => ({ f, value, good })))
  return fc.oneof(
    { arbitrary: fc.constant<Mutation>({ m: "none" }), weight: 6 },
    { arbitrary: invalidFor.map(({ f, value }): Mutation => ({ m: "invalid", field: f, value })), weight: 6 },
    { arbitrary: invalidFor.map(({ f, value, good }): Mutation => ({ m: "dup-valid-last", field: f, bad: value, good })), weight: 1 },
    { arbitrary: invalidFor.map(({ f, value, good }): Mutation => ({ m: "dup-invalid-last", field: f, bad: value, good })), weight: 1 },
    { arbitrary: fc.tuple(objectKey.filter((k) => !KNOWN_KEYS.has(k)), tree.map(render)).map(([key, value]): Mutation => ({ m: "unknown", key, value })), weight: 2 },
    { arbitrary: fc.constantFrom("[]", "[{}]", js("x"), "1", "null", "true", "1e400").map((text): Mutation => ({ m: "not-object", text })), weight: 1 },
    {
      arbitrary: fc
        .constantFrom("{", "{\"command\":}", "{'command':'a'}", "{\"command\":\"a\",}", "{\"command\":NaN}", "{\"priority\":Infinity}", "\u0000", "{\"command\":\"a\"}x", "{\"a\":\"\u0001\"}", "{\"a\":01}", "\ufeff{}", "{\"a\":\"\\x41\"}", "{\"a\":\"\\ud800\"", "[".repeat(10_000))
        .map((text): Mutation => ({ m: "bad-json", text })),
      weight: 1
    },
    { arbitrary: fc.constantFrom([0xff], [0xc3], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xc0, 0xaf], [0xe2, 0x82]).map((bytes): Mutation => ({ m: "bad-utf8", bytes })), weight: 1 },
    {
      arbitrary: fc.constantFrom(null, "text/plain", "application/json; charset=latin1", "application/x-www-form-urlencoded", "multipart/form-data", "application/jsonx", "*/*").map((contentType): Mutation => ({ m: "content-type", contentType })),
      weight: 1
    },
    { arbitrary: fc.constant<Mutation>({ m: "oversize-body" }), weight: 1 }
  )
}

/**
 * A request body from valid entries and one mutation, with what the server must answer. The
 * server checks in this order: Content-Type (415), size (413), UTF-8 and JSON (400 body), the
 * schema (400 naming the field), then the handler.
 */
const bodyCase = (valid: Entries, mutation: Mutation): BodyCase => {
  const bodyError = (rule?: string): Expected => ({ kind: "error", status: [400], field: "body", ...(rule !== undefined ? { rule } : {}) })
  let entries: Array<readonly [string, string]> = [...valid]
  const set = (field: string, value: string) => {
    entries = entries.filter(([key]) => key !== field)
    entries.push([field, value])
  }
  let broken: Expected | undefined
  switch (mutation.m) {
    case "none":
      break
    case "invalid":
      set(mutation.field, mutation.value)
      broken = { kind: "error", status: [400], field: mutation.field }
      break
    case "dup-valid-last":
      // JSON.parse keeps the last of repeated keys: the invalid first value is overridden.
      entries = entries.filter(([key]) => key !== mutation.field)
      entries.push([mutation.field, mutation.bad], [mutation.field, mutation.good])
      break
    case "dup-invalid-last":
      entries = entries.filter(([key]) => key !== mutation.field)
      entries.push([mutation.field, mutation.good], [mutation.field, mutation.bad])
      broken = { kind: "error", status: [400], field: mutation.field }
      break
    case "unknown":
      entries.push([mutation.key, mutation.value])
      broken = { kind: "error", status: [400], field: mutation.key === "" ? "body" : mutation.key, rule: "unknown" }
      break
    case "not-object":
      return { body: Buffer.from(mutation.text), contentType: "application/json", broken: bodyError("type"), parsed: undefined, note: `not an object: ${mutation.text}` }
    case "bad-json":
      return { body: Buffer.from(mutation.text), contentType: "application/json", broken: bodyError("json"), parsed: undefined, note: `bad JSON: ${mutation.text.slice(0, 40)}` }
    case "bad-utf8": {
      const text = renderBody([...entries, ["zz", js("#BAD#")]])
      const [before, after] = text.split("#BAD#")
      return { body: Buffer.concat([Buffer.from(before ?? ""), Buffer.from(mutation.bytes), Buffer.from(after ?? "")]), contentType: "application/json", broken: bodyError("utf8"), parsed: undefined, note: `bad UTF-8 ${mutation.bytes.join(",")}` }
    }
    case "content-type":
      return { body: Buffer.from(renderBody(entries)), contentType: mutation.contentType, broken: { kind: "error", status: [415], field: "Content-Type", rule: "content_type" }, parsed: undefined, note: `content type ${String(mutation.contentType)}` }
    case "oversize-body":
      entries.push(["pad", js("p".repeat(BODY_LIMIT))])
      return { body: Buffer.from(renderBody(entries)), contentType: "application/json", broken: { kind: "error", status: [413], field: "body", rule: "max_bytes" }, parsed: undefined, note: "oversize body" }
  }
  const text = renderBody(entries)
  return { body: Buffer.from(text, "utf8"), contentType: "application/json", broken, parsed: JSON.parse(text) as Record<string, unknown>, note: `${mutation.m} ${text.slice(0, 160)}` }
}

/** The size limit is checked right after the Content-Type: a body over it is a 413 whatever else is wrong. */
const sized = (c: BodyCase): BodyCase =>
  c.body.length > BODY_LIMIT && !(c.broken?.kind === "error" && c.broken.status.includes(415)) ? { ...c, broken: { kind: "error", status: [413], field: "body", rule: "max_bytes" } } : c

/** Valid entries of a body: the required fields and a random subset of the others. */
const validEntries = (fields: FieldSpec, required: ReadonlyArray<string>): fc.Arbitrary<Entries> =>
  fc.record(Object.fromEntries(Object.entries(fields).map(([name, spec]) => [name, required.includes(name) ? spec.valid : fc.option(spec.valid, { nil: undefined })]))).map((record) =>
    Object.entries(record).flatMap(([key, value]): Array<readonly [string, string]> => (value === undefined ? [] : [[key, value]]))
  )

// ---------------------------------------------------------------------------------------------
// HTTP cases

/** Tasks this run holds a lease on (claimed over HTTP with the worker token). */
const heldHttp: Array<string> = []
const heldSdk: Array<string> = []
const failures: Array<string> = []

const createCase = fc
  .record({
    entries: validEntries(CREATE_FIELDS, ["command"]),
    payload: fc.option(fc.oneof({ arbitrary: tree, weight: 9 }, { arbitrary: fc.constant<Tree>({ k: "str", v: "x".repeat(PAYLOAD_LIMIT + 1) }), weight: 1 }), { nil: undefined }),
    mutation: mutationOf(CREATE_FIELDS)
  })
  .map(({ entries, payload, mutation }) => {
    const withPayload: Entries = payload === undefined ? entries : [...entries, ["payload", render(payload)]]
    let c = bodyCase(withPayload, mutation)
    const payloadText = payload === undefined ? undefined : render(payload)
    if (c.broken === undefined && c.parsed !== undefined && payload !== undefined && payloadText !== undefined) {
      // A payload too deep to serialise may be refused naming it; one too large must be.
      if (isDeep(payload)) c = { ...c, broken: { kind: "any" } }
      else if (Buffer.byteLength(normalised(payloadText)) > PAYLOAD_LIMIT) c = { ...c, broken: { kind: "error", status: [400], field: "payload", rule: "max_bytes" } }
    }
    return sized(c)
  })

const runCreate = async (c: BodyCase) => {
  count("http create")
  const answer = await send("POST", "/v1/codeq/tasks", PRODUCER, c.body, c.contentType)
  const parsed = c.parsed
  const expected: Expected = c.broken ?? {
    kind: "ok",
    check: (a) => {
      if (parsed === undefined || a.json === undefined) return "no JSON"
      if (typeof a.json.id !== "string" || !UUID_PATTERN.test(a.json.id)) return `no task id: ${a.text.slice(0, 200)}`
      if (a.json.command !== parsed.command) return `command ${String(a.json.command)} ≠ ${String(parsed.command)}`
      if (a.json.priority !== ((parsed.priority as number | undefined) ?? 0)) return `priority ${String(a.json.priority)} ≠ ${String(parsed.priority)}`
      if (js(a.json.payload) !== js(parsed.payload ?? null)) return `payload did not round-trip: ${js(a.json.payload).slice(0, 100)} ≠ ${js(parsed.payload ?? null).slice(0, 100)}`
      return undefined
    }
  }
  const failure = judge(answer, expected, [202])
  if (failure !== undefined) failures.push(`create ${c.note}: ${failure}`)
}

const claimCase = fc.record({ entries: validEntries(CLAIM_FIELDS, ["commands"]), mutation: mutationOf(CLAIM_FIELDS) }).map(({ entries, mutation }) => sized(bodyCase(entries, mutation)))

const runClaim = async (c: BodyCase) => {
  count("http claim")
  const answer = await send("POST", "/v1/codeq/tasks/claim", WORKER, c.body, c.contentType)
  if (answer.status === 200 && typeof answer.json?.id === "string") heldHttp.push(answer.json.id)
  const failure = judge(answer, c.broken ?? { kind: "ok" }, [200, 204])
  if (failure !== undefined) failures.push(`claim ${c.note}: ${failure}`)
}

type Target = { readonly t: "held"; readonly pick: number } | { readonly t: "random" } | { readonly t: "hostile"; readonly id: string } | { readonly t: "upper" }
const targetArb: fc.Arbitrary<Target> = fc.oneof(
  { arbitrary: fc.nat().map((pick): Target => ({ t: "held", pick })), weight: 5 },
  { arbitrary: fc.constant<Target>({ t: "random" }), weight: 2 },
  { arbitrary: hostileString.filter((s) => s !== "" && !UUID_PATTERN.test(s)).map((id): Target => ({ t: "hostile", id })), weight: 2 },
  { arbitrary: fc.constant<Target>({ t: "upper" }), weight: 1 }
)

const RESULT_BODIES = {
  valid: fc.oneof(
    tree.filter((t) => !isDeep(t)).map((t) => `{"status":"COMPLETED","result":${render(t)}}`),
    hostileString.filter((s) => s.trim() !== "" && s.length <= 4096).map((e) => `{"status":"FAILED","error":${js(e)}}`),
    fc.constant(`{"status":"COMPLETED","result":null,"artifacts":[{"name":"a.txt","contentBase64":"aGk="}],"workerId":"ignored"}`)
  ),
  invalid: fc.constantFrom(
    ["{\"status\":\"DONE\",\"result\":1}", "status"],
    ["{\"result\":1}", "status"],
    ["{\"status\":null}", "status"],
    ["{\"status\":\"COMPLETED\"}", "result"],
    ["{\"status\":\"FAILED\"}", "error"],
    ["{\"status\":\"FAILED\",\"error\":\"  \"}", "error"],
    [`{"status":"FAILED","error":${js("e".repeat(4097))}}`, "error"],
    ["{\"status\":\"COMPLETED\",\"result\":1,\"artifacts\":[{\"name\":\"\"}]}", "artifacts"],
    ["{\"status\":\"COMPLETED\",\"result\":1,\"artifacts\":[{\"name\":\"x\"}]}", "artifacts"],
    ["{\"status\":\"COMPLETED\",\"result\":1,\"artifacts\":[{\"name\":\"x\",\"contentBase64\":\"%%%\"}]}", "artifacts"],
    [`{"status":"COMPLETED","result":${js("r".repeat(PAYLOAD_LIMIT + 1))}}`, "result"],
    ["{\"status\":\"COMPLETED\",\"result\":1,\"__proto__\":{\"admin\":true}}", "__proto__"],
    ["{\"status\":\"COMPLETED\",\"result\":1,\"constructor\":{\"prototype\":{\"x\":1}}}", "constructor"],
    ["{\"status\":\"COMPLETED\",\"status\":\"NOPE\",\"result\":1}", "status"]
  )
}

type LeaseCase = { readonly op: "heartbeat" | "nack" | "result"; readonly target: Target; readonly c: BodyCase }

const leaseCase: fc.Arbitrary<LeaseCase> = fc.oneof(
  fc.record({ target: targetArb, entries: validEntries(HEARTBEAT_FIELDS, []), mutation: mutationOf(HEARTBEAT_FIELDS) }).map(({ target, entries, mutation }): LeaseCase => ({ op: "heartbeat", target, c: sized(bodyCase(entries, mutation)) })),
  fc.record({ target: targetArb, entries: validEntries(NACK_FIELDS, []), mutation: mutationOf(NACK_FIELDS) }).map(({ target, entries, mutation }): LeaseCase => ({ op: "nack", target, c: sized(bodyCase(entries, mutation)) })),
  fc
    .record({ target: targetArb, valid: RESULT_BODIES.valid, invalid: fc.option(RESULT_BODIES.invalid, { nil: undefined, freq: 3 }), transport: fc.option(mutationOf({ none: { valid: fc.constant("1"), invalid: fc.constant("1") } }).filter((m) => ["bad-utf8", "content-type", "oversize-body", "bad-json", "not-object"].includes(m.m)), { nil: undefined, freq: 1 }) })
    .map(({ target, valid, invalid, transport }): LeaseCase => {
      if (transport !== undefined) return { op: "result", target, c: sized(bodyCase([["status", js("COMPLETED")], ["result", "1"]], transport)) }
      const text = invalid?.[0] ?? valid
      return { op: "result", target, c: { body: Buffer.from(text), contentType: "application/json", broken: invalid === undefined ? undefined : { kind: "error", status: [400], field: invalid[1] }, parsed: undefined, note: text.slice(0, 120) } }
    })
)

const runLease = async ({ op, target, c }: LeaseCase) => {
  count(`http ${op}`)
  const held = target.t === "held" ? heldHttp[target.pick % Math.max(1, heldHttp.length)] : undefined
  const id = held ?? (target.t === "hostile" ? target.id : target.t === "upper" ? randomUUID().toUpperCase() : randomUUID())
  const path = `/v1/codeq/tasks/${target.t === "hostile" ? pathSegment(id) : id}/${op}`
  const answer = await send("POST", path, WORKER, c.body, c.contentType)
  let expected: Expected
  if (c.broken !== undefined) expected = c.broken
  else if (target.t === "hostile") expected = { kind: "error", status: [400, 404, 405], field: "id" }
  else if (target.t === "upper") expected = { kind: "error", status: [400], field: "id", rule: "uuid" }
  else if (held === undefined) expected = { kind: "error", status: [404] }
  // A held task may have been settled by an earlier case, or its lease lost: 409 then.
  else expected = { kind: "ok" }
  const failure = judge(answer, expected.kind === "error" && target.t === "hostile" && answer.status !== 400 ? { kind: "any" } : expected, held !== undefined ? [200, 409] : [200])
  if (failure !== undefined) failures.push(`${op} ${path.slice(0, 80)} ${c.note}: ${failure}`)
}

/** Requests the HTTP parser must refuse: answered with a JSON 4xx naming the part at fault, and closed. */
const RAW_CASES: ReadonlyArray<{ readonly name: string; readonly bytes: (token: string) => string | Buffer; readonly halfClose: boolean; readonly field: ReadonlyArray<string> }> = [
  { name: "Content-Length shorter than the body", halfClose: false, field: ["body", "request", "Content-Length"], bytes: (t) => `POST /v1/codeq/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{"command":"fz-a"}` },
  { name: "Content-Length longer than the body, then EOF", halfClose: true, field: ["Content-Length", "body"], bytes: (t) => `POST /v1/codeq/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{"command":"fz-a"}` },
  { name: "Content-Length not a number", halfClose: false, field: ["Content-Length"], bytes: (t) => `POST /v1/codeq/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nContent-Type: application/json\r\nContent-Length: abc\r\n\r\n{"command":"fz-a"}` },
  { name: "Content-Length negative", halfClose: false, field: ["Content-Length"], bytes: (t) => `POST /v1/codeq/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nContent-Type: application/json\r\nContent-Length: -1\r\n\r\n{"command":"fz-a"}` },
  { name: "Content-Length huge", halfClose: false, field: ["Content-Length", "body"], bytes: (t) => `POST /v1/codeq/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nContent-Type: application/json\r\nContent-Length: 99999999999999999999999\r\n\r\n{"command":"fz-a"}` },
  { name: "two different Content-Lengths", halfClose: false, field: ["Content-Length"], bytes: (t) => `POST /v1/codeq/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nContent-Type: application/json\r\nContent-Length: 18\r\nContent-Length: 19\r\n\r\n{"command":"fz-a"}` },
  { name: "Content-Length with Transfer-Encoding", halfClose: false, field: ["Content-Length", "Transfer-Encoding"], bytes: (t) => `POST /v1/codeq/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nContent-Type: application/json\r\nContent-Length: 18\r\nTransfer-Encoding: chunked\r\n\r\n{"command":"fz-a"}` },
  { name: "bad chunk size", halfClose: false, field: ["Transfer-Encoding"], bytes: (t) => `POST /v1/codeq/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{"command":"fz-a"}\r\n0\r\n\r\n` },
  { name: "control character in a header", halfClose: false, field: ["headers", "request"], bytes: (t) => `POST /v1/codeq/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nX-Evil: a\u0001b\r\nContent-Type: application/json\r\nContent-Length: 18\r\n\r\n{"command":"fz-a"}` },
  { name: "header without a colon", halfClose: false, field: ["headers", "request"], bytes: (t) => `POST /v1/codeq/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nnot a header\r\nContent-Length: 0\r\n\r\n` },
  { name: "headers too large", halfClose: false, field: ["headers"], bytes: (t) => `POST /v1/codeq/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nX-Big: ${"b".repeat(20_000)}\r\nContent-Length: 0\r\n\r\n` },
  { name: "garbage request line", halfClose: false, field: ["request"], bytes: () => `\u0000\u0001 /v1/codeq/tasks HTTP/1.1\r\n\r\n` },
  { name: "space in the path", halfClose: false, field: ["request"], bytes: (t) => `POST /v1/codeq/tasks/a b/nack HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nContent-Length: 0\r\n\r\n` }
]

const runRaw = async (i: number) => {
  const raw = RAW_CASES[i % RAW_CASES.length] as (typeof RAW_CASES)[number]
  count("http raw")
  const bytes = raw.bytes(i % 2 === 0 ? PRODUCER : WORKER)
  const answer = await sendRaw(typeof bytes === "string" ? Buffer.from(bytes, "latin1") : bytes, raw.halfClose)
  const failure = judge(answer, { kind: "error", status: [400, 408, 413, 431], field: raw.field }, [])
  if (failure !== undefined) failures.push(`raw ${raw.name}: ${failure}`)
}

// ---------------------------------------------------------------------------------------------
// SDK cases: JavaScript values, not JSON texts

const circular = (): unknown => {
  const o: Record<string, unknown> = { a: 1 }
  o.self = o
  return o
}
const deepValue = (depth: number): unknown => {
  let v: unknown = 1
  for (let i = 0; i < depth; i++) v = [v]
  return v
}
/** JS values no field accepts as they are (each generator filters what its field would take). */
const JS_HOSTILE: ReadonlyArray<() => unknown> = [
  () => NaN, () => Infinity, () => -Infinity, () => 1e308, () => -1, () => 2 ** 53 + 2, () => 0.5, () => 10n, () => Symbol("s"), () => () => 1,
  () => null, () => true, () => [], () => ({}), () => new Date(), () => "", () => "\ud800", () => "a.b", () => "*", () => ">", () => "$JS.API.>", () => "x".repeat(3000)
]
const jsHostile = fc.nat(JS_HOSTILE.length - 1).map((i) => (JS_HOSTILE[i] as () => unknown)())

type SdkField = { readonly valid: fc.Arbitrary<unknown>; readonly invalid: fc.Arbitrary<unknown> }
const intValid = (min: number, max: number) => fc.oneof(fc.integer({ min, max }), fc.constant(min === 0 ? -0 : min))
const notInt = (min: number, max: number) => jsHostile.filter((v) => !(typeof v === "number" && Number.isInteger(v) && v >= min && v <= max))

const SDK_CREATE: Readonly<Record<string, SdkField>> = {
  command: { valid: commandArb, invalid: fc.oneof(jsHostile.filter((v) => !(typeof v === "string" && COMMAND_PATTERN.test(v))), hostileString.filter((s) => !COMMAND_PATTERN.test(s))) },
  priority: { valid: intValid(0, 9), invalid: notInt(0, 9) },
  webhook: { valid: webhookArb.map((w) => JSON.parse(w) as string).filter((w) => w !== ""), invalid: fc.constantFrom("", "ftp://127.0.0.1/", "javascript:x", 5, null, "x".repeat(3000), `http://127.0.0.1/${"a".repeat(2100)}`) },
  maxAttempts: { valid: intValid(1, 100), invalid: notInt(1, 100) },
  runAt: { valid: runAtArb.map((r) => JSON.parse(r) as string), invalid: fc.constantFrom("tomorrow", 5, null, new Date(), "9999-12-31T00:00:00Z", "2026-02-30T00:00:00Z") },
  delaySeconds: { valid: fc.double({ min: 0, max: 3_600, noNaN: true }), invalid: jsHostile.filter((v) => !(typeof v === "number" && Number.isFinite(v) && v >= 0 && v <= MAX_DELAY)) },
  leaseSeconds: { valid: intValid(1, MAX_LEASE), invalid: notInt(1, MAX_LEASE) },
  idempotencyKey: {
    valid: fc.tuple(hostileString.filter((s) => !hasLoneSurrogate(s)), fc.uuid()).map(([s, id]) => `${s}#${id}`),
    invalid: fc.constantFrom("", "\ud800", "a\udc00", "k".repeat(257), 5, null, ["k"])
  },
  payload: {
    valid: tree.filter((t) => !isDeep(t)).map((t) => JSON.parse(render(t)) as unknown),
    invalid: fc.constantFrom(10n, Symbol("p"), () => 1, undefined, "bigint-inside", "circular", "deep", "oversize", "throwing-toJSON").map((v) =>
      v === "bigint-inside" ? { a: [1n] } : v === "circular" ? circular() : v === "deep" ? deepValue(200_000) : v === "oversize" ? "x".repeat(PAYLOAD_LIMIT + 1) : v === "throwing-toJSON" ? { toJSON: () => { throw new Error("no") } } : v
    ).filter((v) => v !== undefined)
  }
}

type ArbOf<A> = A extends fc.Arbitrary<infer T> ? T : never
const TYPED = [ValidationError, TaskNotFound, LeaseLost, InvalidTransition, ClaimCapacity] as const
type Outcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown }
const attempt = async (run: () => unknown): Promise<Outcome> => {
  sentSdk++
  const deadline = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${REQUEST_DEADLINE_MS} ms (a hang)`)), REQUEST_DEADLINE_MS).unref())
  try {
    return { ok: true, value: await Promise.race([Promise.resolve().then(run), deadline]) }
  } catch (error) {
    return { ok: false, error }
  }
}

type SdkExpected = { readonly kind: "ok" } | { readonly kind: "invalid"; readonly field: string } | { readonly kind: "typed" } | { readonly kind: "settle" }
const describeError = (e: unknown) => (e instanceof Error ? `${e.constructor.name} ${e.message.slice(0, 160)} ${js((e as unknown as { field?: unknown }).field ?? "")}` : String(e))

const judgeSdk = (outcome: Outcome, expected: SdkExpected): string | undefined => {
  if (!outcome.ok) {
    const error = outcome.error
    if (!TYPED.some((type) => error instanceof type)) return `an untyped error: ${describeError(error)}`
    if (error instanceof ValidationError && (typeof error.field !== "string" || error.field === "" || typeof error.rule !== "string")) return `a ValidationError naming no field: ${describeError(error)}`
  }
  switch (expected.kind) {
    case "ok":
      return outcome.ok ? undefined : `expected success: ${describeError(outcome.error)}`
    case "invalid":
      if (outcome.ok) return `expected a ValidationError on ${expected.field}, got success`
      return outcome.error instanceof ValidationError && fieldMatches(outcome.error.field, expected.field) ? undefined : `expected a ValidationError on ${expected.field}: ${describeError(outcome.error)}`
    case "typed":
      return undefined
    case "settle":
      return outcome.ok || outcome.error instanceof LeaseLost || outcome.error instanceof InvalidTransition ? undefined : `expected success or LeaseLost: ${describeError(outcome.error)}`
  }
}

const SDK_TENANTS = ["acme", "fz-sdk"] as const
const hostileTenant = fc.oneof(hostileString.filter((s) => !TENANT_PATTERN.test(s)), fc.constantFrom("ACME", "a", "acme.*", "acme.>", "1acme", "acme ", "a".repeat(64), 7, null))

const sdkCreateCase = fc.record({
  tenant: fc.oneof({ arbitrary: fc.constantFrom(...SDK_TENANTS).map((t) => ({ t, bad: false })), weight: 9 }, { arbitrary: hostileTenant.map((t) => ({ t, bad: true })), weight: 1 }),
  fields: fc.record(Object.fromEntries(Object.entries(SDK_CREATE).map(([name, spec]) => [name, name === "command" ? spec.valid : fc.option(spec.valid, { nil: undefined, freq: 2 })]))),
  broken: fc.option(fc.constantFrom(...Object.keys(SDK_CREATE)).chain((field) => (SDK_CREATE[field] as SdkField).invalid.map((value) => ({ field, value }))), { nil: undefined, freq: 2 }),
  extra: fc.option(fc.tuple(objectKey.filter((k) => !KNOWN_KEYS.has(k)), jsHostile), { nil: undefined, freq: 10 })
})

const runSdkCreate = async ({ tenant, fields, broken, extra }: ArbOf<typeof sdkCreateCase>) => {
  count("sdk create")
  const input: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(fields)) if (value !== undefined) input[key] = value
  if (broken !== undefined) Object.defineProperty(input, broken.field, { value: broken.value, enumerable: true, writable: true, configurable: true })
  if (extra !== undefined) Object.defineProperty(input, extra[0], { value: extra[1], enumerable: true, writable: true, configurable: true })
  // The first broken rule in the order the library checks: unknown field, tenant, then fields.
  const expected: SdkExpected =
    extra !== undefined ? { kind: "invalid", field: extra[0] === "" ? "body" : extra[0] } : tenant.bad ? { kind: "invalid", field: "tenant" } : broken !== undefined ? { kind: "invalid", field: broken.field } : { kind: "ok" }
  const outcome = await attempt(() => client.producer(tenant.t as string).create(input as never))
  let failure = judgeSdk(outcome, expected)
  if (failure === undefined && outcome.ok && expected.kind === "ok") {
    const view = outcome.value as { command: string; payload: unknown }
    if (view.command !== input.command || js(view.payload) !== js(input.payload ?? null)) failure = `the task does not echo its input: ${js(view).slice(0, 200)}`
  }
  if (failure !== undefined) failures.push(`sdk create ${String(tenant.t)} ${js(Object.keys(input))} broken=${broken?.field ?? "-"}: ${failure}`)
}

const sdkClaimCase = fc.record({
  tenant: fc.oneof({ arbitrary: fc.constantFrom(...SDK_TENANTS).map((t) => ({ t, bad: false })), weight: 9 }, { arbitrary: hostileTenant.map((t) => ({ t, bad: true })), weight: 1 }),
  commands: fc.oneof(
    { arbitrary: fc.array(commandArb, { minLength: 1, maxLength: 5 }).map((c) => ({ c: [...c, "fz-a"] as unknown, bad: false })), weight: 6 },
    { arbitrary: fc.constantFrom<unknown>([], ["a.b"], ["*"], [">"], ["$JS.API.>"], [""], [null], [7], Array.from({ length: 101 }, (_, i) => `c${i}`), "fz-a", null, { length: 1 }).map((c) => ({ c, bad: true })), weight: 2 }
  ),
  workerId: fc.oneof({ arbitrary: fc.constantFrom("fz-sdk-worker", "w.1:x@y"), weight: 9 }, { arbitrary: fc.constantFrom<unknown>("", "a b", "*", ">", "w\u0000", "x".repeat(129), 5, null), weight: 1 }),
  leaseSeconds: fc.option(fc.oneof({ arbitrary: intValid(1, MAX_LEASE), weight: 4 }, { arbitrary: notInt(1, MAX_LEASE), weight: 1 }), { nil: undefined }),
  waitSeconds: fc.option(fc.oneof({ arbitrary: fc.constant(0), weight: 4 }, { arbitrary: notInt(0, 30), weight: 1 }), { nil: undefined })
})

const runSdkClaim = async (c: ArbOf<typeof sdkClaimCase>) => {
  count("sdk claim")
  const badWorker = !(typeof c.workerId === "string" && /^[A-Za-z0-9_.:@-]{1,128}$/.test(c.workerId))
  const inRange = (v: unknown, min: number, max: number) => typeof v === "number" && Number.isInteger(v) && v >= min && v <= max
  const badLease = c.leaseSeconds !== undefined && !inRange(c.leaseSeconds, 1, MAX_LEASE)
  const badWait = c.waitSeconds !== undefined && !inRange(c.waitSeconds, 0, 30)
  const bad = c.tenant.bad || c.commands.bad || badWorker || badLease || badWait
  const outcome = await attempt(() =>
    client.tasks.claim(c.tenant.t as string, c.commands.c as Array<string>, { workerId: c.workerId as string, ...(c.leaseSeconds !== undefined ? { leaseSeconds: c.leaseSeconds as number } : {}), ...(c.waitSeconds !== undefined ? { waitSeconds: c.waitSeconds as number } : {}) })
  )
  if (outcome.ok && outcome.value !== undefined) heldSdk.push(`${String(c.tenant.t)}|${(outcome.value as { task: { id: string } }).task.id}|${String(c.workerId)}`)
  const failure = judgeSdk(outcome, bad ? { kind: "invalid", field: c.tenant.bad ? "tenant" : badWorker ? "workerId" : c.commands.bad ? "commands" : badLease ? "leaseSeconds" : "waitSeconds" } : { kind: "ok" })
  // With several broken values the first in the library's order is named: any field is fine then.
  const several = [c.tenant.bad, c.commands.bad, badWorker, badLease, badWait].filter(Boolean).length > 1
  const final = several ? judgeSdk(outcome, { kind: "typed" }) ?? (outcome.ok ? "expected a ValidationError" : undefined) : failure
  if (final !== undefined) failures.push(`sdk claim ${js([c.tenant.t, c.commands.c, c.workerId, c.leaseSeconds, c.waitSeconds]).slice(0, 200)}: ${final}`)
}

const sdkLeaseCase = fc.record({
  op: fc.constantFrom("heartbeat" as const, "nack" as const, "complete" as const, "fail" as const),
  target: targetArb,
  badTenant: fc.option(hostileTenant, { nil: undefined, freq: 8 }),
  badWorker: fc.option(fc.constantFrom<unknown>("", "a b", "*", ">", 5, null), { nil: undefined, freq: 8 }),
  number: fc.option(fc.oneof({ arbitrary: intValid(1, 3_600), weight: 3 }, { arbitrary: notInt(0, MAX_DELAY), weight: 1 }), { nil: undefined }),
  value: fc.oneof(tree.filter((t) => !isDeep(t)).map((t) => JSON.parse(render(t)) as unknown), hostileString)
})

const runSdkLease = async (c: ArbOf<typeof sdkLeaseCase>) => {
  count(`sdk ${c.op}`)
  const held = c.target.t === "held" && heldSdk.length > 0 ? (heldSdk[c.target.pick % heldSdk.length] as string).split("|") : undefined
  // null is a hostile value here, not an absent one: no `??`.
  const tenant = c.badTenant !== undefined ? c.badTenant : (held?.[0] ?? "fz-sdk")
  const taskId = held?.[1] ?? (c.target.t === "hostile" ? c.target.id : c.target.t === "upper" ? randomUUID().toUpperCase() : randomUUID())
  const workerId = c.badWorker !== undefined ? c.badWorker : (held?.[2] ?? "fz-sdk-worker")
  const n = c.number as number | undefined
  const badNumber = n !== undefined && !(typeof n === "number" && Number.isInteger(n) && n >= (c.op === "heartbeat" ? 1 : 0) && n <= (c.op === "heartbeat" ? MAX_LEASE : MAX_DELAY))
  const lease = { workerId: workerId as string }
  const reason = typeof c.value === "string" ? c.value : js(c.value)
  const error = typeof c.value === "string" && c.value !== "" ? c.value : "failed"
  // What the log could not take is refused as over HTTP: a text too long, a result over the payload limit.
  const tooLarge =
    c.op === "nack" ? (reason.length > MAX_REASON_LENGTH ? "reason" : undefined)
      : c.op === "complete" ? (Buffer.byteLength(js({ result: c.value })) > PAYLOAD_LIMIT ? "result" : undefined)
        : c.op === "fail" ? (error.length > MAX_ERROR_LENGTH ? "error" : undefined)
          : undefined
  const outcome = await attempt(() => {
    switch (c.op) {
      case "heartbeat":
        return client.tasks.heartbeat(tenant as string, taskId, lease, n)
      case "nack":
        return client.tasks.settleLease(tenant as string, taskId, lease, { type: "nack", reason, ...(n !== undefined ? { delaySeconds: n } : {}) })
      case "complete":
        return client.tasks.settleLease(tenant as string, taskId, lease, { type: "complete", result: c.value })
      case "fail":
        return client.tasks.settleLease(tenant as string, taskId, lease, { type: "fail", error })
    }
  })
  const numberMatters = c.op === "heartbeat" || c.op === "nack"
  const expected: SdkExpected =
    c.badTenant !== undefined
      ? { kind: "invalid", field: "tenant" }
      : c.target.t === "hostile" || c.target.t === "upper"
        ? { kind: "invalid", field: "id" }
        : c.badWorker !== undefined
          ? { kind: "invalid", field: "workerId" }
          : numberMatters && badNumber
            ? { kind: "invalid", field: c.op === "heartbeat" ? "extendSeconds" : "delaySeconds" }
            : tooLarge !== undefined
              ? { kind: "invalid", field: tooLarge }
              : held !== undefined
              ? { kind: "settle" }
              : { kind: "typed" }
  let failure = judgeSdk(outcome, expected)
  if (failure === undefined && held === undefined && expected.kind === "typed" && !(!outcome.ok && outcome.error instanceof TaskNotFound)) failure = `expected TaskNotFound: ${outcome.ok ? "success" : describeError(outcome.error)}`
  if (failure !== undefined) failures.push(`sdk ${c.op} ${js([tenant, taskId, workerId, n]).slice(0, 200)}: ${failure}`)
}

const sdkWorkerCase = fc.record({
  tenant: fc.oneof(fc.constant<unknown>("fz-sdk"), hostileTenant),
  workerId: fc.oneof(fc.constant<unknown>(undefined), fc.constantFrom<unknown>("", "a b", "*", "w\u0000", 5)),
  leaseSeconds: fc.option(notInt(1, MAX_LEASE), { nil: undefined }),
  commands: fc.constantFrom<unknown>([], ["a.b"], ["*"], [">"], ["$JS.API.>"], [""], Array.from({ length: 101 }, (_, i) => `c${i}`), ["ok", "\ud800"])
})

const runSdkWorker = async (c: ArbOf<typeof sdkWorkerCase>) => {
  count("sdk worker")
  // Every case has at least its commands broken: run() must refuse before it pulls anything.
  const outcome = await attempt(() => {
    const worker = client.worker(c.tenant as string, { ...(c.workerId !== undefined ? { workerId: c.workerId as string } : {}), ...(c.leaseSeconds !== undefined ? { leaseSeconds: c.leaseSeconds as number } : {}) })
    return worker.run(c.commands as Array<string>, () => null)
  })
  const failure = outcome.ok ? "a worker with broken settings ran" : judgeSdk(outcome, { kind: "typed" })
  if (failure !== undefined || !(outcome.ok === false && outcome.error instanceof ValidationError)) failures.push(`sdk worker ${js([c.tenant, c.workerId, c.leaseSeconds, c.commands]).slice(0, 200)}: ${failure ?? "not a ValidationError"}`)
}

/** What an SDK handler hands back: an outcome of any kind with hostile parts, or a bare value. */
const hostileText = fc.oneof(hostileString, jsHostile, fc.constantFrom<unknown>(new Error("boom"), "e".repeat(5_000)))
const hostileResult = fc.oneof(tree.filter((t) => !isDeep(t)).map((t) => JSON.parse(render(t)) as unknown), jsHostile, fc.constantFrom<unknown>(circular(), { big: "x".repeat(20_000) }))
const sdkHandlerCase = fc.oneof(
  fc.record({ kind: fc.constant("complete" as const), result: hostileResult, artifacts: fc.option(fc.oneof(jsHostile, fc.array(hostileResult, { maxLength: 3 })), { nil: undefined }) }),
  fc.record({ kind: fc.constant("fail" as const), error: hostileText, result: fc.option(hostileResult, { nil: undefined }) }),
  fc.record({ kind: fc.constant("nack" as const), reason: hostileText, delay: fc.option(fc.oneof(jsHostile, fc.constantFrom(0, 1e15, -5)), { nil: undefined }) }),
  fc.record({ kind: fc.constant("value" as const), value: hostileResult })
)
type HandlerCase = ArbOf<typeof sdkHandlerCase>
const HANDLER_COMMAND = "fz-handler"
/** Each case under the number its task's payload carries: set before the task exists, so no handler runs without it. */
const handlerCases: Array<HandlerCase> = []
const handlerIssues: Array<unknown> = []

/** The handler of the fuzz's SDK worker: what the task's case says, as a handler would return it. */
const fuzzHandler = (task: { readonly payload?: unknown }): unknown => {
  const c = handlerCases[(task.payload as { case?: number } | undefined)?.case ?? -1]
  switch (c?.kind) {
    case "complete":
      return complete(c.result, c.artifacts as ReadonlyArray<unknown> | undefined)
    case "fail":
      return fail(c.error as string, c.result)
    case "nack":
      return nack(c.reason as string, c.delay as number | undefined)
    case "value":
      return c.value
    default:
      throw new Error("a task without its case")
  }
}

const runSdkHandler = async (c: HandlerCase) => {
  count("sdk handler")
  sentSdk++
  handlerCases.push(c)
  const task = await client.producer("fz-sdk").create({ command: HANDLER_COMMAND, maxAttempts: 2, payload: { case: handlerCases.length - 1 } })
  // The task's first attempt settles, however hostile the outcome, and leaves nothing its readers refuse.
  const SETTLED = new Set(["TaskCompleted", "TaskFailed", "TaskNacked", "TaskDeadLettered"])
  let history = await client.log.readTask("fz-sdk", task.id)
  const ended = async () => {
    history = await client.log.readTask("fz-sdk", task.id)
    return history.undecodable.length > 0 || history.events.some((e) => SETTLED.has(e.event.type))
  }
  // Judged below, deadline or not: the failure names what the log holds.
  await waitFor(ended, { timeoutMs: REQUEST_DEADLINE_MS, intervalMs: 50, what: "the task's first attempt to settle" }).catch(() => undefined)
  const failure =
    history.undecodable.length > 0
      ? `an event the log's readers refuse: ${js(history.undecodable).slice(0, 200)}`
      : !history.events.some((e) => SETTLED.has(e.event.type))
        ? `not settled within ${REQUEST_DEADLINE_MS} ms: ${history.events.map((e) => e.event.type).join(",")}`
        : undefined
  if (failure !== undefined) failures.push(`sdk handler ${c.kind}: ${failure}`)
}

// ---------------------------------------------------------------------------------------------

let broker: RunningBroker
let client: CodeqClient
let http: RunningHttpServer
const quarantined: Array<unknown> = []

/** Runs `numRuns` batches of `BATCH` cases at once; stops at the first batch with a failure. */
const fuzz = async <T>(name: string, arb: fc.Arbitrary<T>, numRuns: number, run: (c: T) => Promise<void>) => {
  const started = Date.now()
  const before = sentHttp + sentSdk
  failures.length = 0
  const details = await fc.check(
    fc.asyncProperty(fc.array(arb, { minLength: BATCH, maxLength: BATCH }), async (batch) => {
      const settled = await Promise.allSettled(batch.map(run))
      for (const s of settled) if (s.status === "rejected") failures.push(`${name}: ${s.reason instanceof Error ? s.reason.message : String(s.reason)}`)
      return failures.length === 0
    }),
    { numRuns, endOnFailure: true }
  )
  // The cases are printed by the failures themselves (a counterexample batch is too long to read).
  if (details.failed) throw new Error(`${name} (seed ${details.seed}): ${failures.length} failures, the first:\n${failures.slice(0, 8).join("\n")}${details.errorInstance instanceof Error ? `\n${details.errorInstance.message}` : ""}`)
  console.log(`fuzz ${name}: ${sentHttp + sentSdk - before} requests in ${((Date.now() - started) / 1000).toFixed(1)} s`)
}

describe("fuzzing the HTTP API and the SDK with hostile input", () => {
  beforeAll(async () => {
    // Webhooks only to loopback and private literals, refused before connecting: no traffic at all.
    broker = await startBroker(brokerConfig(nats.url(), naming, { allowPrivateNetworks: false }), { onQuarantine: (event) => void quarantined.push(event) })
    client = await CodeqClient.connect({ servers: nats.url(), naming, limits: { maxPayloadBytes: PAYLOAD_LIMIT } })
    http = await startHttpServer({ client, auth: { staticTokens: Object.values(STATIC_TOKENS) }, port: 0, host: "127.0.0.1", bodyLimitBytes: BODY_LIMIT })
    port = http.port
  })
  afterAll(async () => {
    agent.destroy()
    await http?.close()
    await client?.close()
    await broker?.stop()
  })

  it("answers every hostile create, claim, heartbeat, nack and result over HTTP with a 2xx or a 4xx JSON error naming the field", { timeout: 240_000 }, async () => {
    await fuzz("http create", createCase, 200, runCreate)
    await fuzz("http claim", claimCase, 75, runClaim)
    await fuzz("http heartbeat/nack/result", leaseCase, 150, runLease)
    await fuzz("http malformed HTTP", fc.nat(), 15, runRaw)
  })

  it("answers the same through the SDK with a result or a typed error naming the field", { timeout: 240_000 }, async () => {
    await fuzz("sdk create", sdkCreateCase, 75, runSdkCreate)
    await fuzz("sdk claim", sdkClaimCase, 25, runSdkClaim)
    await fuzz("sdk heartbeat/nack/complete/fail", sdkLeaseCase, 50, runSdkLease)
    await fuzz("sdk worker", sdkWorkerCase, 10, runSdkWorker)
    const worker = client.worker("fz-sdk", { workerId: "fz-handler-worker", onError: (error) => void handlerIssues.push(error) })
    const running = worker.run([HANDLER_COMMAND], fuzzHandler, { concurrency: BATCH })
    try {
      await fuzz("sdk handler", sdkHandlerCase, 15, runSdkHandler)
    } finally {
      await worker.stop()
      await running
    }
    // What the worker reported is what it held back, named by field: nothing else went wrong.
    const unexpected = handlerIssues.filter((error) => !(error instanceof ValidationError))
    expect(unexpected.map(describeError)).toEqual([])
    const total = sentHttp + sentSdk
    console.log(`fuzz total: ${total} requests (${sentHttp} HTTP, ${sentSdk} SDK): ${js(counts)}`)
    expect(total).toBeGreaterThanOrEqual(10_000)
  })

  it("still serves afterwards, quarantined nothing, audits clean, and wrote only subjects of the codeq scheme", { timeout: 120_000 }, async () => {
    expect((await send("GET", "/readyz", PRODUCER, undefined)).status).toBe(200)
    const created = await send("POST", "/v1/codeq/tasks", PRODUCER, Buffer.from(js({ command: "fz-after", payload: { ok: true } })))
    expect(created.status).toBe(202)
    const claimed = await send("POST", "/v1/codeq/tasks/claim", WORKER, Buffer.from(js({ commands: ["fz-after"], waitSeconds: 10 })))
    expect(claimed.json?.id).toBe(created.json?.id)
    const done = await send("POST", `/v1/codeq/tasks/${String(created.json?.id)}/result`, WORKER, Buffer.from(js({ status: "COMPLETED", result: { ok: true } })))
    expect(done.status).toBe(200)

    await waitFor(() => projectionsCaughtUp(broker, client.nc, naming), { what: "the projections to fold the fuzzed log", timeoutMs: 60_000 })
    expect(quarantined).toEqual([])

    const problems: Array<Problem> = []
    const result = await replayLog({ nc: client.nc, wire: wireTargetOf(client.nc, [nats.url()]) }, naming, { detail: "ids" }, (t) => void problems.push(...t.problems))
    console.log(`audit: ${result.tasks} tasks, ${result.events} events, ${problems.length} problems`)
    expect(problems).toEqual([])
    expect(result.tasks).toBeGreaterThan(1_000)

    const root = naming.subjectRoot.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
    const tenant = "[a-z][a-z0-9-]{1,62}"
    const uuid = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    const command = "[A-Za-z0-9_-]{1,64}"
    const schemes: Record<string, RegExp> = {
      [eventsStream(naming)]: new RegExp(`^${root}\\.evt\\.${tenant}\\.${uuid}$`),
      [claimsStream(naming)]: new RegExp(`^${root}\\.claim\\.${tenant}\\.${command}\\.[0-9]$`),
      [webhooksStream(naming)]: new RegExp(`^${root}\\.hook\\.${tenant}$`),
      // Besides tenants' tasks, the read model's write barrier (KV_BARRIER_KEY, never a tenant's key).
      [`KV_${taskStateBucket(naming)}`]: new RegExp(`^\\$KV\\.${taskStateBucket(naming)}\\.(${tenant}\\.${uuid}|${KV_BARRIER_KEY.replace(".", "\\.")})$`),
      [`KV_${deadLetterBucket(naming)}`]: new RegExp(`^\\$KV\\.${deadLetterBucket(naming)}\\.${tenant}\\.${command}\\.${uuid}$`),
      // Open tasks under their task-state keys, besides the write barrier and the ready key (OPEN_INDEX_READY_KEY).
      [`KV_${openTaskBucket(naming)}`]: new RegExp(`^\\$KV\\.${openTaskBucket(naming)}\\.(${tenant}\\.${uuid}|${KV_BARRIER_KEY.replace(".", "\\.")}|${OPEN_INDEX_READY_KEY.replace(".", "\\.")})$`),
      [`KV_${projectionsBucket(naming)}`]: new RegExp(`^\\$KV\\.${projectionsBucket(naming)}\\.[A-Za-z0-9_-]+$`)
    }
    const jsm = await client.nc.jetstreamManager()
    const ours: Array<string> = []
    for await (const info of jsm.streams.list()) if (info.config.name.includes(naming.streamPrefix)) ours.push(info.config.name)
    expect(ours.sort()).toEqual(Object.keys(schemes).sort())
    const tenants = new Set<string>()
    for (const [stream, scheme] of Object.entries(schemes)) {
      const info = await jsm.streams.info(stream, { subjects_filter: ">" })
      const subjects = Object.keys(info.state.subjects ?? {})
      const strays = subjects.filter((subject) => !scheme.test(subject))
      expect(strays, `subjects of ${stream} outside the scheme`).toEqual([])
      if (stream === eventsStream(naming)) for (const subject of subjects) tenants.add(subject.split(".")[2] ?? "")
      console.log(`${stream}: ${subjects.length} subjects, all within the scheme`)
    }
    // Tenants come from tokens (acme) and the SDK cases' valid tenants only.
    expect([...tenants].sort()).toEqual(["acme", "fz-sdk"])
  })
})
