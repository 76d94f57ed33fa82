import { describe, expect, it } from "vitest"
import { ConfigProvider, Effect, Exit } from "effect"
import { HttpConfig, httpServerOptions } from "../src/http/config.js"
import { HttpError, toHttpError } from "../src/http/errors.js"
import { LogError } from "../src/eventlog/errors.js"
import { ClaimCapacity } from "../src/tasks/errors.js"
import { RateLimiter, claimableCommands, tenantOf, workerIdOf, type Principal } from "../src/http/auth.js"
import { decodeWith } from "../src/http/decode.js"
import { Router, route } from "../src/http/router.js"
import { openApiDocument } from "../src/http/systemRoutes.js"
import { BatchCreateBody, CreateTaskBody, SubmitResultBody } from "../src/http/schemas.js"

const refusal = (run: () => unknown): HttpError => {
  try {
    run()
  } catch (error) {
    if (error instanceof HttpError) return error
    throw error
  }
  throw new Error("expected a refusal")
}

const principal = (overrides: Partial<Principal> = {}): Principal => ({
  tenant: "acme",
  subject: "worker-1",
  role: "worker",
  scopes: new Set(),
  eventTypes: undefined,
  key: "k",
  ...overrides
})

describe("request decoding", () => {
  it("accepts a valid body as typed values", () => {
    expect(decodeWith(CreateTaskBody, { command: "resize", payload: { a: 1 }, priority: 9 })).toEqual({ command: "resize", payload: { a: 1 }, priority: 9 })
  })

  it("names the deepest field at fault with its rule", () => {
    const error = refusal(() => decodeWith(BatchCreateBody, { tasks: [{ command: "a" }, { command: "b", priority: 10 }] }))
    expect(error.status).toBe(400)
    expect(error.body).toEqual({ error: "tasks[1].priority must be an integer from 0 to 9", field: "tasks[1].priority", rule: "range" })
  })

  it("reports unknown, missing and wrongly typed fields, and enum mismatches as one type error", () => {
    expect(refusal(() => decodeWith(CreateTaskBody, { command: "a", extra: true })).body).toMatchObject({ field: "extra", rule: "unknown" })
    expect(refusal(() => decodeWith(CreateTaskBody, {})).body).toMatchObject({ field: "command", rule: "required" })
    expect(refusal(() => decodeWith(CreateTaskBody, { command: ["a"] })).body).toMatchObject({ field: "command", rule: "type", error: "command must be a string" })
    expect(refusal(() => decodeWith(SubmitResultBody, { status: "done" })).body).toEqual({ error: 'status must be "COMPLETED" | "FAILED"', field: "status", rule: "type" })
    expect(refusal(() => decodeWith(CreateTaskBody, "text")).body).toMatchObject({ field: "body", rule: "type" })
  })
})

describe("tokens to principals", () => {
  it("takes the tenant from tid or its aliases when they agree, and refuses missing, malformed or conflicting ones", () => {
    expect(tenantOf({ tid: "acme" })).toBe("acme")
    expect(tenantOf({ tenantId: "acme", tenant_id: "acme" })).toBe("acme")
    for (const claims of [{}, { tid: "Acme" }, { tid: 7 }, { tid: "acme", tenantId: "globex" }]) {
      const error = refusal(() => tenantOf(claims))
      expect(error.status, JSON.stringify(claims)).toBe(403)
      expect(error.body.rule).toBe("tenant")
    }
  })

  it("uses the subject as worker id, or a stable digest of a subject a worker id may not hold", () => {
    expect(workerIdOf(principal())).toBe("worker-1")
    const digest = workerIdOf(principal({ subject: "auth0|abc def" }))
    expect(digest).toMatch(/^sub-[0-9a-f]{32}$/)
    expect(workerIdOf(principal({ subject: "auth0|abc def" }))).toBe(digest)
    expect(refusal(() => workerIdOf(principal({ subject: undefined }))).status).toBe(403)
  })

  it("restricts claims to the token's eventTypes", () => {
    expect(claimableCommands(principal(), ["a"])).toEqual(["a"])
    expect(claimableCommands(principal({ eventTypes: ["*"] }), ["a"])).toEqual(["a"])
    expect(claimableCommands(principal({ eventTypes: ["a", "b"] }), undefined)).toEqual(["a", "b"])
    expect(refusal(() => claimableCommands(principal({ eventTypes: ["a"] }), ["a", "c"])).body).toMatchObject({ rule: "event_type" })
  })
})

describe("rate limit", () => {
  it("allows a burst, refuses with Retry-After, and refills with time, per key", () => {
    let now = 0
    const limiter = new RateLimiter({ requestsPerSecond: 2, burst: 3 }, () => now)
    for (let i = 0; i < 3; i++) limiter.take("a")
    const refused = refusal(() => limiter.take("a"))
    expect(refused.status).toBe(429)
    expect(refused.headers?.["Retry-After"]).toBe("1")
    limiter.take("b")
    now += 500
    limiter.take("a")
    expect(refusal(() => limiter.take("a")).status).toBe(429)
  })
})

describe("library errors to responses", () => {
  it("answers too many concurrent claim sources with 429 and Retry-After", () => {
    const http = toHttpError(new ClaimCapacity({ tenant: "acme", limit: 64 }))
    expect(http.status).toBe(429)
    expect(http.headers?.["Retry-After"]).toBe("1")
    expect(http.body).toMatchObject({ rule: "claim_sources" })
  })

  it("answers an unanswered log (leader election) with a retryable 503", () => {
    const http = toHttpError(new LogError({ reason: "unavailable", detail: "no responders" }))
    expect(http.status).toBe(503)
    expect(http.headers?.["Retry-After"]).toBeDefined()
  })
})

describe("routing and the OpenAPI document", () => {
  const routes = [
    route({ method: "GET", path: "/v1/codeq/tasks/:id", summary: "get", access: { kind: "tenant" }, responses: { 200: { description: "ok" } }, handle: async () => ({ status: 200 }) }),
    route({ method: "POST", path: "/v1/codeq/tasks/claim", summary: "claim", access: { kind: "scope", scope: "codeq:claim" }, body: CreateTaskBody, responses: { 204: { description: "" } }, handle: async () => ({ status: 204 }) })
  ]

  it("matches templates, decodes params, and tells 404 from 405", () => {
    const router = new Router(routes)
    expect(router.match("GET", "/v1/codeq/tasks/a%20b")).toMatchObject({ kind: "found", params: { id: "a b" } })
    expect(router.match("POST", "/v1/codeq/tasks/claim")).toMatchObject({ kind: "found", route: { summary: "claim" } })
    expect(router.match("DELETE", "/v1/codeq/tasks/x")).toEqual({ kind: "method_not_allowed", allow: ["GET"] })
    expect(router.match("GET", "/v1/other")).toEqual({ kind: "not_found" })
  })

  it("documents each route with its parameters, body schema and scope", () => {
    const doc = openApiDocument(routes) as { paths: Record<string, Record<string, Record<string, unknown>>> }
    expect(doc.paths["/v1/codeq/tasks/{id}"]?.get).toMatchObject({ operationId: "getTasksById", parameters: [{ name: "id", in: "path", required: true }] })
    expect(doc.paths["/v1/codeq/tasks/claim"]?.post).toMatchObject({
      description: "Needs the scope codeq:claim.",
      requestBody: { content: { "application/json": { schema: { $ref: "#/components/schemas/CreateTaskRequest" } } } }
    })
  })
})

describe("configuration from the environment", () => {
  const load = (env: Record<string, string>) =>
    Effect.runSyncExit(Effect.withConfigProvider(HttpConfig, ConfigProvider.fromMap(new Map(Object.entries(env)))))

  it("defaults to port 8080, 1 MiB bodies, no tokens, no JWT and no rate limit", () => {
    const exit = load({})
    expect(Exit.isSuccess(exit)).toBe(true)
    if (!Exit.isSuccess(exit)) return
    expect(httpServerOptions(exit.value)).toEqual({ auth: { staticTokens: [] }, port: 8080, host: "0.0.0.0", bodyLimitBytes: 1024 * 1024 })
  })

  it("reads static tokens, a JWKS verifier and a rate limit, and never prints a token", () => {
    const tokens = [{ token: "0123456789abcdef-dev", tenant: "acme", role: "worker" }]
    const exit = load({
      CODEQ_HTTP_STATIC_TOKENS: JSON.stringify(tokens),
      CODEQ_HTTP_JWKS_URL: "https://idp.test/jwks.json",
      CODEQ_HTTP_JWT_ISSUER: "https://idp.test",
      CODEQ_HTTP_JWT_AUDIENCE: "codeq",
      CODEQ_HTTP_RATE_LIMIT_RPS: "50"
    })
    if (!Exit.isSuccess(exit)) throw new Error(String(exit.cause))
    expect(String(exit.value.staticTokens)).not.toContain("0123456789abcdef")
    expect(httpServerOptions(exit.value)).toMatchObject({
      auth: { staticTokens: tokens, jwt: { jwksUrl: "https://idp.test/jwks.json", issuer: "https://idp.test", audience: "codeq", clockSkewSeconds: 30 } },
      rateLimit: { requestsPerSecond: 50 }
    })
  })

  it("refuses malformed static tokens and a JWKS URL without issuer and audience", () => {
    expect(Exit.isFailure(load({ CODEQ_HTTP_STATIC_TOKENS: '[{"token":"short","tenant":"acme"}]' }))).toBe(true)
    expect(Exit.isFailure(load({ CODEQ_HTTP_STATIC_TOKENS: "not json" }))).toBe(true)
    expect(Exit.isFailure(load({ CODEQ_HTTP_JWKS_URL: "https://idp.test/jwks.json" }))).toBe(true)
  })
})
