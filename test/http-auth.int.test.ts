import { describe, expect, it } from "vitest"
import { freePort } from "../src/testing/natsServer.js"
import { useNatsServer, waitFor } from "./support/harness.js"
import { startHttpServer } from "../src/http/index.js"
import { useHttpApi } from "./support/httpApi.js"
import { STATIC_TOKENS, apiClient } from "./support/jwks.js"

const nats = useNatsServer()

describe("HTTP API: authentication, scopes and tenant isolation", () => {
  const api = useHttpApi(nats, { identity: { cacheMaxAgeMs: 500 } })
  const call = api.call
  const idp = api.idp
  let n = 0
  const command = () => `auth-${++n}`
  const acmeProducer = STATIC_TOKENS.acmeProducer.token
  const acmeWorker = STATIC_TOKENS.acmeWorker.token
  const globexWorker = STATIC_TOKENS.globexWorker.token
  const workerScopes = "codeq:claim codeq:heartbeat codeq:abandon codeq:nack codeq:result"

  const create = async (cmd: string, token: string = acmeProducer) => {
    const res = await call("POST", "/v1/codeq/tasks", { token, body: { command: cmd } })
    expect(res.status).toBe(202)
    return res.json as { id: string }
  }
  const claim = (cmd: string | undefined, token: string, waitSeconds = 10) =>
    call("POST", "/v1/codeq/tasks/claim", { token, body: { ...(cmd !== undefined ? { commands: [cmd] } : {}), waitSeconds } })

  it("hides a tenant's task from another tenant: 404 for every read and write, and never claimed", async () => {
    const cmd = command()
    const task = await create(cmd)
    expect((await claim(cmd, globexWorker, 1)).status).toBe(204)
    expect((await claim(cmd, acmeWorker)).json.id).toBe(task.id)
    const path = `/v1/codeq/tasks/${task.id}`
    const attempts = [
      call("GET", path, { token: globexWorker }),
      call("GET", `${path}/result`, { token: STATIC_TOKENS.globexProducer.token }),
      call("POST", `${path}/heartbeat`, { token: globexWorker, body: {} }),
      call("POST", `${path}/nack`, { token: globexWorker, body: { reason: "x" } }),
      call("POST", `${path}/abandon`, { token: globexWorker }),
      call("POST", `${path}/result`, { token: globexWorker, body: { status: "COMPLETED", result: {} } }),
      call("POST", `/v1/codeq/admin/dlq/${task.id}/requeue`, { token: STATIC_TOKENS.globexAdmin.token })
    ]
    for (const res of await Promise.all(attempts)) expect(res).toMatchObject({ status: 404, json: { error: "task not found" } })
    const batch = await call("POST", "/v1/codeq/tasks/batch/results", { token: globexWorker, body: { results: [{ taskId: task.id, status: "COMPLETED", result: {} }] } })
    expect(batch.json.results).toEqual([{ taskId: task.id, error: "task not found", code: 404 }])
    expect((await call("GET", path, { token: acmeProducer })).json).toMatchObject({ status: "IN_PROGRESS", workerId: "acme-worker-1" })
  })

  it("refuses a result from a worker token without codeq:result, and claims from a producer token", async () => {
    const cmd = command()
    const task = await create(cmd)
    expect((await claim(cmd, acmeProducer)).json).toMatchObject({ error: "this token lacks the scope codeq:claim", rule: "scope" })
    expect((await claim(cmd, STATIC_TOKENS.acmeNarrow.token)).json.id).toBe(task.id)
    expect((await call("POST", `/v1/codeq/tasks/${task.id}/heartbeat`, { token: STATIC_TOKENS.acmeNarrow.token })).status).toBe(200)
    const refused = await call("POST", `/v1/codeq/tasks/${task.id}/result`, { token: STATIC_TOKENS.acmeNarrow.token, body: { status: "COMPLETED", result: {} } })
    expect(refused).toMatchObject({ status: 403, json: { error: "this token lacks the scope codeq:result" } })
    expect((await call("GET", "/v1/codeq/admin/queues", { token: acmeWorker })).status).toBe(403)
  })

  it("refuses a result from a worker that does not hold the lease with 409", async () => {
    const cmd = command()
    const task = await create(cmd)
    await claim(cmd, acmeWorker)
    const stale = await call("POST", `/v1/codeq/tasks/${task.id}/result`, { token: STATIC_TOKENS.acmeWorker2.token, body: { status: "COMPLETED", result: {} } })
    expect(stale).toMatchObject({ status: 409, json: { reason: "lease_lost" } })
  })

  it("runs a task through with JWTs: tenant from tid, worker id from sub, scopes from scope", async () => {
    const cmd = command()
    const producer = await idp().token({ sub: "svc-producer", tid: "acme" })
    const worker = await idp().token({ sub: "auth0|worker-7", tenantId: "acme", scope: workerScopes })
    const task = await create(cmd, producer)
    const claimed = await claim(cmd, worker)
    expect(claimed.json).toMatchObject({ id: task.id, tenantId: "acme" })
    expect(String(claimed.json.workerId)).toMatch(/^sub-[0-9a-f]{32}$/)
    const done = await call("POST", `/v1/codeq/tasks/${task.id}/result`, { token: worker, body: { status: "COMPLETED", result: { by: "jwt" } } })
    expect(done.status).toBe(200)
  })

  it("lets a token claim only its eventTypes, and claims those when the request names none", async () => {
    const [allowed, other] = [command(), command()]
    const worker = await idp().token({ sub: "typed-worker", tid: "acme", scope: workerScopes, eventTypes: [allowed] })
    expect(await claim(other, worker)).toMatchObject({ status: 403, json: { rule: "event_type" } })
    const task = await create(allowed)
    expect((await claim(undefined, worker)).json.id).toBe(task.id)
  })

  it("takes the tenant from tid, tenantId or tenant_id, refusing conflicting or missing ones with 403", async () => {
    for (const claims of [{ tid: "acme" }, { tenantId: "acme" }, { tenant_id: "acme" }, { tid: "acme", tenant_id: "acme" }]) {
      const res = await call("GET", "/v1/codeq/tasks/00000000-0000-4000-8000-000000000000", { token: await idp().token({ sub: "p", ...claims }) })
      expect(res.status, JSON.stringify(claims)).toBe(404)
    }
    const conflicting = await call("GET", "/v1/codeq/admin/queues", { token: await idp().token({ sub: "p", tid: "acme", tenant_id: "globex", role: "admin" }) })
    expect(conflicting).toMatchObject({ status: 403, json: { rule: "tenant" } })
    expect(String(conflicting.json.error)).toMatch(/conflict/)
    expect((await call("GET", "/v1/codeq/admin/queues", { token: await idp().token({ sub: "p", role: "admin" }) })).status).toBe(403)
    expect((await call("GET", "/v1/codeq/admin/queues", { token: await idp().token({ sub: "p", tid: "acme", role: "admin" }) })).status).toBe(200)
  })

  it("accepts tokens signed with a rotated-in key and refuses the retired key once it leaves the JWKS", async () => {
    const before = await idp().token({ sub: "p", tid: "acme" })
    expect((await call("GET", "/v1/codeq/admin/queues", { token: before })).status).toBe(403)
    await idp().rotate()
    const fetches = idp().fetches()
    const rotated = await idp().token({ sub: "p", tid: "acme", role: "admin" })
    expect((await call("GET", "/v1/codeq/admin/queues", { token: rotated })).status).toBe(200)
    expect(idp().fetches()).toBeGreaterThan(fetches)
    await idp().rotate({ dropOld: true })
    await waitFor(async () => (await call("GET", "/v1/codeq/admin/queues", { token: rotated })).status === 401, { what: "the retired key to be refused" })
    const res = await call("GET", "/v1/codeq/admin/queues", { token: rotated })
    expect(res.json.error).toBe("no key of the JWKS matches the token's key id (kid)")
  })

  it("tolerates the configured clock skew on expiry, and no more", async () => {
    const justExpired = await idp().token({ sub: "p", tid: "acme", role: "admin" }, { expiresIn: -10 })
    expect((await call("GET", "/v1/codeq/admin/queues", { token: justExpired })).status).toBe(200)
    const longExpired = await idp().token({ sub: "p", tid: "acme", role: "admin" }, { expiresIn: -60 })
    expect(await call("GET", "/v1/codeq/admin/queues", { token: longExpired })).toMatchObject({ status: 401, json: { error: "the token has expired" } })
  })

  it("limits requests per token with 429 and Retry-After when configured", async () => {
    const limited = await startHttpServer({ client: api.client(), auth: { staticTokens: Object.values(STATIC_TOKENS) }, port: 0, host: "127.0.0.1", rateLimit: { requestsPerSecond: 0.5, burst: 2 } })
    try {
      const limitedCall = apiClient(limited.url)
      const get = (token: string) => limitedCall("GET", "/v1/codeq/tasks/00000000-0000-4000-8000-000000000000", { token })
      expect((await get(acmeProducer)).status).toBe(404)
      expect((await get(acmeProducer)).status).toBe(404)
      const refused = await get(acmeProducer)
      expect(refused).toMatchObject({ status: 429, json: { error: "rate limit exceeded for this token" } })
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1)
      expect((await get(acmeWorker)).status).toBe(404)
    } finally {
      await limited.close()
    }
  })

  it("answers 503 with Retry-After while the JWKS cannot be fetched", async () => {
    const port = await freePort()
    const offline = await startHttpServer({ client: api.client(), auth: { jwt: { jwksUrl: `http://127.0.0.1:${port}/jwks.json`, issuer: idp().issuer, audience: idp().audience } }, port: 0, host: "127.0.0.1" })
    try {
      const res = await apiClient(offline.url)("GET", "/v1/codeq/admin/queues", { token: await idp().token({ sub: "p", tid: "acme" }) })
      expect(res).toMatchObject({ status: 503, json: { error: "the identity provider's key set (JWKS) cannot be fetched" } })
      expect(res.headers.get("retry-after")).toBe("2")
    } finally {
      await offline.close()
    }
  })
})
