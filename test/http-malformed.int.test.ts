import { request } from "node:http"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startBroker, type RunningBroker } from "../src/broker.js"
import { startHttpServer, type RunningHttpServer } from "../src/http/index.js"
import { CodeqClient } from "../src/sdk/client.js"
import { brokerConfig, eventCount, freshNaming, useNatsServer } from "./support/harness.js"
import { STATIC_TOKENS, apiClient, startIdentityProvider, type ApiCall, type ApiResponse, type TestIdentityProvider } from "./support/jwks.js"

const nats = useNatsServer()
const BODY_LIMIT = 64 * 1024
const PAYLOAD_LIMIT = 16 * 1024

const producer = STATIC_TOKENS.acmeProducer.token
const worker = STATIC_TOKENS.acmeWorker.token
const admin = STATIC_TOKENS.acmeAdmin.token
const json = (value: unknown) => JSON.stringify(value)

/** Sends `bytes` in chunks without a Content-Length (chunked transfer encoding). */
const chunked = (url: string, path: string, token: string, bytes: number): Promise<ApiResponse> =>
  new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method: "POST", headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" } }, (res) => {
      let text = ""
      res.on("data", (chunk: Buffer) => (text += chunk.toString()))
      res.on("end", () => {
        const body = JSON.parse(text) as Record<string, unknown>
        resolve({ status: res.statusCode ?? 0, headers: new Headers(), body, json: body })
      })
    })
    req.on("error", reject)
    const chunk = Buffer.alloc(8 * 1024, "a")
    for (let sent = 0; sent < bytes; sent += chunk.length) req.write(chunk)
    req.end()
  })

interface Ctx {
  readonly call: ApiCall
  readonly idp: TestIdentityProvider
  readonly url: string
  readonly taskId: string
}

interface Case {
  readonly name: string
  readonly status: number
  readonly error: RegExp
  readonly field?: string
  readonly rule?: string
  readonly send: (ctx: Ctx) => Promise<ApiResponse>
}

const create = (body: unknown): Case["send"] => ({ call }) => call("POST", "/v1/codeq/tasks", { token: producer, body })
const claim = (body: unknown): Case["send"] => ({ call }) => call("POST", "/v1/codeq/tasks/claim", { token: worker, body })
const onTask = (suffix: string, body: unknown): Case["send"] => ({ call, taskId }) => call("POST", `/v1/codeq/tasks/${taskId}/${suffix}`, { token: worker, body })
const withJwt = (claims: Record<string, unknown>, options: Parameters<TestIdentityProvider["token"]>[1] = {}): Case["send"] => async ({ call, idp }) =>
  call("GET", "/v1/codeq/admin/queues", { token: await idp.token({ sub: "p", tid: "acme", role: "admin", ...claims }, options) })

const cases: ReadonlyArray<Case> = [
  { name: "create: body is not JSON", status: 400, field: "body", rule: "json", error: /not valid JSON/, send: create('{"command":') },
  { name: "create: body is an array", status: 400, field: "body", rule: "type", error: /must be a JSON object/, send: create("[1,2]") },
  { name: "create: command is a number", status: 400, field: "command", rule: "type", error: /command must be a string/, send: create({ command: 7 }) },
  { name: "create: unknown field", status: 400, field: "colour", rule: "unknown", error: /unknown field colour/, send: create({ command: "a", colour: "red" }) },
  { name: "create: command missing", status: 400, field: "command", rule: "required", error: /command is required/, send: create({ payload: {} }) },
  { name: "create: priority above 9", status: 400, field: "priority", rule: "range", error: /priority must be an integer from 0 to 9/, send: create({ command: "a", priority: 12 }) },
  { name: "create: priority not an integer", status: 400, field: "priority", rule: "integer", error: /priority must be an integer/, send: create({ command: "a", priority: 1.5 }) },
  { name: "create: priority a string", status: 400, field: "priority", rule: "type", error: /priority must be a number/, send: create({ command: "a", priority: "high" }) },
  { name: "create: command with a dot (subject injection)", status: 400, field: "command", rule: "pattern", error: /command matching/, send: create({ command: "a.>" }) },
  { name: "create: webhook not http(s)", status: 400, field: "webhook", rule: "url", error: /webhook must use http or https/, send: create({ command: "a", webhook: "ftp://files.test/x" }) },
  { name: "create: runAt not a timestamp", status: 400, field: "runAt", rule: "timestamp", error: /runAt must be an ISO 8601 timestamp/, send: create({ command: "a", runAt: "tomorrow" }) },
  { name: "create: runAt beyond the longest delay (year 9999)", status: 400, field: "runAt", rule: "range", error: /runAt must be at most 31622400 seconds \(366 days\) from now/, send: create({ command: "a", runAt: "9999-12-31T00:00:00Z" }) },
  { name: "create: negative maxAttempts", status: 400, field: "maxAttempts", rule: "range", error: /maxAttempts must be an integer from 0 to 100/, send: create({ command: "a", maxAttempts: -1 }) },
  { name: "create: body sent as text/plain", status: 415, field: "Content-Type", rule: "content_type", error: /must be JSON: Content-Type application\/json .*not text\/plain/, send: ({ call }) => call("POST", "/v1/codeq/tasks", { token: producer, body: json({ command: "a" }), headers: { "Content-Type": "text/plain" } }) },
  { name: "create: JSON in another charset", status: 415, rule: "content_type", error: /charset utf-8/, send: ({ call }) => call("POST", "/v1/codeq/tasks", { token: producer, body: json({ command: "a" }), headers: { "Content-Type": "application/json; charset=iso-8859-1" } }) },
  { name: "result: form-encoded body", status: 415, rule: "content_type", error: /not application\/x-www-form-urlencoded/, send: ({ call, taskId }) => call("POST", `/v1/codeq/tasks/${taskId}/result`, { token: worker, body: "status=COMPLETED", headers: { "Content-Type": "application/x-www-form-urlencoded" } }) },
  { name: "create: payload over the payload limit", status: 400, field: "payload", rule: "max_bytes", error: /limit is 16384 bytes/, send: create({ command: "a", payload: "x".repeat(PAYLOAD_LIMIT + 10) }) },
  { name: "create: body over the body limit", status: 413, rule: "max_bytes", error: /exceeds the limit of 65536 bytes/, send: create({ command: "a", payload: "x".repeat(BODY_LIMIT) }) },
  { name: "create: chunked body over the body limit", status: 413, rule: "max_bytes", error: /exceeds the limit/, send: ({ url }) => chunked(url, "/v1/codeq/tasks", producer, 3 * BODY_LIMIT) },
  { name: "batch create: 101 tasks", status: 400, field: "tasks", rule: "max_items", error: /at most 100 items/, send: ({ call }) => call("POST", "/v1/codeq/tasks/batch", { token: producer, body: { tasks: Array.from({ length: 101 }, () => ({ command: "a" })) } }) },
  { name: "batch create: no tasks", status: 400, field: "tasks", rule: "min_items", error: /non-empty array/, send: ({ call }) => call("POST", "/v1/codeq/tasks/batch", { token: producer, body: { tasks: [] } }) },
  { name: "batch create: tasks not an array", status: 400, field: "tasks", rule: "type", error: /tasks must be an array/, send: ({ call }) => call("POST", "/v1/codeq/tasks/batch", { token: producer, body: { tasks: { command: "a" } } }) },
  { name: "batch create: no tasks field", status: 400, field: "tasks", rule: "required", error: /tasks is required/, send: ({ call }) => call("POST", "/v1/codeq/tasks/batch", { token: producer, body: {} }) },
  { name: "batch create: body an array", status: 400, field: "body", rule: "type", error: /must be a JSON object/, send: ({ call }) => call("POST", "/v1/codeq/tasks/batch", { token: producer, body: [{ command: "a" }] }) },
  { name: "claim: commands not an array", status: 400, field: "commands", rule: "type", error: /commands must be/, send: claim({ commands: "a" }) },
  { name: "claim: negative waitSeconds", status: 400, field: "waitSeconds", rule: "range", error: /waitSeconds must be an integer of at least 0/, send: claim({ commands: ["a"], waitSeconds: -1 }) },
  { name: "claim: invalid command in the list", status: 400, field: "commands[1]", rule: "pattern", error: /commands\[1\] must be a command matching/, send: claim({ commands: ["ok", "no spaces"] }) },
  { name: "claim: more than 100 commands", status: 400, field: "commands", rule: "max_items", error: /at most 100 commands/, send: claim({ commands: Array.from({ length: 101 }, (_, i) => `c${i}`) }) },
  { name: "claim: unknown field", status: 400, field: "queue", rule: "unknown", error: /unknown field queue/, send: claim({ commands: ["a"], queue: "x" }) },
  { name: "claim: with a producer token", status: 403, rule: "scope", error: /lacks the scope codeq:claim/, send: ({ call }) => call("POST", "/v1/codeq/tasks/claim", { token: producer, body: { commands: ["a"] } }) },
  { name: "heartbeat: task id not a UUID", status: 400, field: "id", rule: "uuid", error: /id must be a lowercase UUID/, send: ({ call }) => call("POST", "/v1/codeq/tasks/not-a-uuid/heartbeat", { token: worker, body: {} }) },
  { name: "heartbeat: extension over the longest lease", status: 400, field: "extendSeconds", rule: "range", error: /extendSeconds must be an integer from 0 to 86400/, send: onTask("heartbeat", { extendSeconds: 100_000 }) },
  { name: "nack: delaySeconds a string", status: 400, field: "delaySeconds", rule: "type", error: /delaySeconds must be a number/, send: onTask("nack", { delaySeconds: "soon" }) },
  { name: "result: unknown status", status: 400, field: "status", rule: "type", error: /status must be "COMPLETED" \| "FAILED"/, send: onTask("result", { status: "DONE" }) },
  { name: "result: COMPLETED without result", status: 400, field: "result", rule: "required", error: /result is required when status is COMPLETED/, send: onTask("result", { status: "COMPLETED" }) },
  { name: "result: FAILED without error", status: 400, field: "error", rule: "required", error: /error is required when status is FAILED/, send: onTask("result", { status: "FAILED", error: " " }) },
  { name: "result: artifact without a name", status: 400, field: "artifacts[0].name", rule: "required", error: /artifacts\[0\]\.name is required/, send: onTask("result", { status: "COMPLETED", result: {}, artifacts: [{ url: "https://x.test/a" }] }) },
  { name: "batch results: 101 items", status: 400, field: "results", rule: "max_items", error: /at most 100 items/, send: ({ call, taskId }) => call("POST", "/v1/codeq/tasks/batch/results", { token: worker, body: { results: Array.from({ length: 101 }, () => ({ taskId, status: "FAILED", error: "x" })) } }) },
  { name: "GET task: id not a UUID", status: 400, field: "id", rule: "uuid", error: /id must be a lowercase UUID/, send: ({ call }) => call("GET", "/v1/codeq/tasks/12345", { token: producer }) },
  { name: "GET result: waitSeconds not an integer", status: 400, field: "waitSeconds", rule: "integer", error: /waitSeconds must be a non-negative integer/, send: ({ call, taskId }) => call("GET", `/v1/codeq/tasks/${taskId}/result?waitSeconds=abc`, { token: producer }) },
  { name: "queue stats: command with a wildcard", status: 400, field: "command", rule: "pattern", error: /command must match/, send: ({ call }) => call("GET", "/v1/codeq/admin/queues/a.*", { token: admin }) },
  { name: "no Authorization header", status: 401, error: /missing Authorization header/, send: ({ call }) => call("GET", "/v1/codeq/admin/queues") },
  { name: "Basic instead of Bearer", status: 401, error: /must be 'Bearer <token>'/, send: ({ call }) => call("GET", "/v1/codeq/admin/queues", { headers: { Authorization: "Basic YTpi" } }) },
  { name: "unknown static token", status: 401, error: /unknown token/, send: ({ call }) => call("GET", "/v1/codeq/admin/queues", { token: "not-a-known-token" }) },
  { name: "JWT with a bad signature", status: 401, error: /signature is invalid/, send: withJwt({}, { foreignKey: true }) },
  { name: "JWT tampered after signing", status: 401, error: /signature is invalid/, send: async ({ call, idp }) => {
    const [header, , signature] = (await idp.token({ sub: "p", tid: "globex", role: "admin" })).split(".")
    const payload = Buffer.from(json({ sub: "p", tid: "acme", role: "admin", iss: idp.issuer, aud: idp.audience, exp: Math.floor(Date.now() / 1000) + 600 })).toString("base64url")
    return call("GET", "/v1/codeq/admin/queues", { token: `${header}.${payload}.${signature}` })
  } },
  { name: "expired JWT", status: 401, error: /token has expired/, send: withJwt({}, { expiresIn: -3600 }) },
  { name: "JWT for another audience", status: 401, error: /audience \(aud\) is not accepted/, send: withJwt({}, { audience: "someone-else" }) },
  { name: "JWT from another issuer", status: 401, error: /issuer \(iss\) is not accepted/, send: withJwt({}, { issuer: "https://evil.test" }) },
  { name: "JWT without expiry", status: 401, error: /no valid expiry \(exp\)/, send: withJwt({}, { noExpiry: true }) },
  { name: "unsigned JWT (alg none)", status: 401, error: /algorithm is not accepted|not a well-formed JWT/, send: ({ call }) => call("GET", "/v1/codeq/admin/queues", { token: `${Buffer.from(json({ alg: "none" })).toString("base64url")}.${Buffer.from(json({ sub: "p", tid: "acme" })).toString("base64url")}.` }) },
  { name: "JWT with conflicting tenant claims", status: 403, rule: "tenant", error: /tenant claims .* conflict/, send: withJwt({ tenantId: "globex" }) },
  { name: "unknown route", status: 404, error: /no route for GET \/v1\/codeq\/nothing/, send: ({ call }) => call("GET", "/v1/codeq/nothing", { token: producer }) },
  { name: "wrong method", status: 405, error: /DELETE is not allowed here; use POST/, send: ({ call }) => call("DELETE", "/v1/codeq/tasks", { token: producer }) }
]

describe("HTTP API: malformed requests", () => {
  const naming = freshNaming()
  let broker: RunningBroker
  let client: CodeqClient
  let http: RunningHttpServer
  let ctx: Ctx
  let eventsBefore = 0

  beforeAll(async () => {
    broker = await startBroker(brokerConfig(nats.url(), naming))
    client = await CodeqClient.connect({ servers: nats.url(), naming, limits: { maxPayloadBytes: PAYLOAD_LIMIT } })
    const idp = await startIdentityProvider()
    http = await startHttpServer({
      client,
      auth: { staticTokens: Object.values(STATIC_TOKENS), jwt: { jwksUrl: idp.jwksUrl, issuer: idp.issuer, audience: idp.audience } },
      port: 0,
      host: "127.0.0.1",
      bodyLimitBytes: BODY_LIMIT
    })
    const call = apiClient(http.url)
    const created = await call("POST", "/v1/codeq/tasks", { token: producer, body: { command: "malformed" } })
    const claimed = await call("POST", "/v1/codeq/tasks/claim", { token: worker, body: { commands: ["malformed"], waitSeconds: 10 } })
    expect(claimed.json.id).toBe(created.json.id)
    ctx = { call, idp, url: http.url, taskId: String(created.json.id) }
    eventsBefore = await eventCount(client.nc, naming)
  })
  afterAll(async () => {
    await http.close()
    await ctx.idp.close()
    await client.close()
    await broker.stop()
  })

  it.each(cases)("$name → $status", async (c) => {
    const res = await c.send(ctx)
    expect(res.status, JSON.stringify(res.body)).toBe(c.status)
    expect(String(res.json.error)).toMatch(c.error)
    if (c.field !== undefined) expect(res.json.field).toBe(c.field)
    if (c.rule !== undefined) expect(res.json.rule).toBe(c.rule)
    if (c.status === 401) expect(res.headers.get("www-authenticate") ?? "Bearer").toMatch(/^Bearer/)
  })

  it("appended nothing to the event log for any of them", async () => {
    expect(await eventCount(client.nc, naming)).toBe(eventsBefore)
  })
})
