import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ROOT_CONTEXT, propagation, trace } from "@opentelemetry/api"
import { CompositePropagator, W3CTraceContextPropagator } from "@opentelemetry/core"
import { B3InjectEncoding, B3Propagator } from "@opentelemetry/propagator-b3"
import { apiRoutes, startHttpServer } from "../src/http/index.js"
import { CodeqClient } from "../src/sdk/client.js"
import { freshNaming, recordSpans, useNatsServer, waitFor } from "./support/harness.js"
import { STATIC_TOKENS, apiClient } from "./support/jwks.js"
import { useHttpApi } from "./support/httpApi.js"

const nats = useNatsServer()

describe("HTTP API: admin, health, OpenAPI and trace propagation", () => {
  const spans = recordSpans()
  const { call, client, dispatched } = useHttpApi(nats, { client: { tracerProvider: spans.provider } })
  let n = 0
  const command = () => `adm-${++n}`
  const producer = STATIC_TOKENS.acmeProducer.token
  const worker = STATIC_TOKENS.acmeWorker.token
  const admin = STATIC_TOKENS.acmeAdmin.token

  beforeAll(async () => {
    propagation.setGlobalPropagator(
      new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new B3Propagator({ injectEncoding: B3InjectEncoding.MULTI_HEADER })] })
    )
  })
  afterAll(async () => {
    propagation.disable()
  })

  const create = async (body: Record<string, unknown>, headers: Record<string, string> = {}) => {
    const res = await call("POST", "/v1/codeq/tasks", { token: producer, body, headers })
    expect(res.status).toBe(202)
    return res.json as { id: string; traceParent: string }
  }
  const claim = (cmd: string) => call("POST", "/v1/codeq/tasks/claim", { token: worker, body: { commands: [cmd], waitSeconds: 10 } })
  const deadLetter = async (cmd: string) => {
    // Highest priority, so it is claimed before any other task of the command — once dispatched:
    // the create answers when the event is in the log, the claim message follows.
    const before = await dispatched(cmd)
    const task = await create({ command: cmd, maxAttempts: 1, priority: 9 })
    await waitFor(async () => (await dispatched(cmd)) > before, { what: "the dispatch of the priority-9 task" })
    expect((await claim(cmd)).json.id).toBe(task.id)
    expect((await call("POST", `/v1/codeq/tasks/${task.id}/nack`, { token: worker, body: { reason: "no" } })).json.status).toBe("dlq")
    return task
  }

  it("counts ready, delayed, in-progress and dead-lettered tasks per command and lane, for the admin's tenant only", async () => {
    const cmd = command()
    for (const priority of [0, 5, 5]) await create({ command: cmd, priority })
    await create({ command: cmd, priority: 5, delaySeconds: 3600 })
    await create({ command: cmd, runAt: new Date(Date.now() + 86_400_000).toISOString() })
    const stats = () => call("GET", `/v1/codeq/admin/queues/${cmd}`, { token: admin })
    // Each document is written on its own flush: the delayed tasks, created last, may come later.
    await waitFor(async () => {
      const { ready, delayed } = (await stats()).json
      return ready === 3 && delayed === 2
    }, { what: "three ready and two delayed tasks in the read model" })
    expect((await stats()).json).toEqual({
      command: cmd,
      ready: 3,
      delayed: 2,
      inProgress: 0,
      lanes: { "0": { ready: 1, delayed: 1, inProgress: 0 }, "5": { ready: 2, delayed: 1, inProgress: 0 } },
      deadLettered: 0
    })
    await waitFor(async () => (await dispatched(cmd)) === 5, { what: "five dispatched tasks" })
    expect((await claim(cmd)).json.priority).toBe(5)
    await waitFor(async () => (await stats()).json.inProgress === 1, { what: "the claim in the stats" })
    expect((await stats()).json).toMatchObject({ ready: 2, delayed: 2, lanes: { "5": { ready: 1, delayed: 1, inProgress: 1 } } })
    await deadLetter(cmd)
    await waitFor(async () => (await stats()).json.deadLettered === 1, { what: "the dead letter in the stats" })
    const all = await call("GET", "/v1/codeq/admin/queues", { token: admin })
    const mine = (all.json.commands as Array<Record<string, unknown>>).find((q) => q.command === cmd)
    expect(mine).toEqual((await stats()).json)
    expect(all.json.totals).toMatchObject({ ready: expect.any(Number), delayed: expect.any(Number), inProgress: expect.any(Number), deadLettered: expect.any(Number) })
    expect(Object.keys(all.json).sort()).toEqual(["commands", "totals"])
    const other = await call("GET", `/v1/codeq/admin/queues/${cmd}`, { token: STATIC_TOKENS.globexAdmin.token })
    expect(other.json).toEqual({ command: cmd, ready: 0, delayed: 0, inProgress: 0, lanes: {}, deadLettered: 0 })
    expect((await call("GET", "/v1/codeq/admin/queues", { token: STATIC_TOKENS.globexAdmin.token })).json.commands).toEqual([])
    expect((await call("GET", `/v1/codeq/admin/queues/${cmd}`, { token: worker })).status).toBe(403)
  })

  it("counts every task of a tenant that has thousands, streamed from the read model", async () => {
    const cmd = command()
    const total = 3_000
    const runAt = new Date(Date.now() + 3_600_000).toISOString()
    const results = await client()
      .producer("acme")
      .createMany(Array.from({ length: total }, (_, i) => ({ command: cmd, priority: i % 10, payload: { i }, ...(i % 3 === 0 ? { runAt } : {}) })))
    expect(results.every((r) => r.ok)).toBe(true)
    const stats = () => call("GET", `/v1/codeq/admin/queues/${cmd}`, { token: admin })
    await waitFor(async () => (await stats()).json.ready === total - total / 3, { timeoutMs: 60_000, what: "every task in the read model" })
    const started = performance.now()
    const timed = await stats()
    console.log(`queue stats over ${total}+ task states of the tenant: ${Math.round(performance.now() - started)} ms`)
    const answer = timed.json as { ready: number; delayed: number; inProgress: number; lanes: Record<string, { ready: number; delayed: number }> }
    expect(answer).toMatchObject({ ready: 2_000, delayed: 1_000, inProgress: 0 })
    expect(Object.keys(answer.lanes)).toHaveLength(10)
    expect(Object.values(answer.lanes).reduce((n, lane) => n + lane.ready + lane.delayed, 0)).toBe(total)
    const all = await call("GET", "/v1/codeq/admin/queues", { token: admin })
    expect((all.json.commands as Array<Record<string, unknown>>).find((q) => q.command === cmd)).toMatchObject({ ready: 2_000, delayed: 1_000 })
  })

  it("lists, requeues and purges dead letters", async () => {
    const cmd = command()
    const task = await deadLetter(cmd)
    const list = () => call("GET", `/v1/codeq/admin/dlq?command=${cmd}`, { token: admin })
    await waitFor(async () => (await list()).json.count === 1, { what: "the dead-letter entry" })
    expect((await list()).json.items).toEqual([expect.objectContaining({ taskId: task.id, command: cmd, reason: "max_attempts", attempts: 1 })])
    expect((await call("GET", `/v1/codeq/admin/dlq?command=${cmd}`, { token: STATIC_TOKENS.globexAdmin.token })).json.count).toBe(0)

    const requeued = await call("POST", `/v1/codeq/admin/dlq/${task.id}/requeue`, { token: admin })
    expect(requeued).toMatchObject({ status: 200, json: { id: task.id, status: "PENDING", attempts: 0 } })
    expect((await call("POST", `/v1/codeq/admin/dlq/${task.id}/requeue`, { token: admin })).json.reason).toBe("not_dead_lettered")
    expect((await claim(cmd)).json).toMatchObject({ id: task.id, attempts: 1 })
    await call("POST", `/v1/codeq/tasks/${task.id}/nack`, { token: worker, body: {} })
    await waitFor(async () => (await list()).json.count === 1, { what: "the second dead letter" })

    expect((await call("DELETE", `/v1/codeq/admin/dlq/${task.id}`, { token: STATIC_TOKENS.globexAdmin.token })).status).toBe(404)
    const purged = await call("DELETE", `/v1/codeq/admin/dlq/${task.id}`, { token: admin })
    expect(purged).toMatchObject({ status: 200, json: { taskId: task.id, status: "purged" } })
    expect((await list()).json.count).toBe(0)
    expect(await call("DELETE", `/v1/codeq/admin/dlq/${task.id}`, { token: admin })).toMatchObject({ status: 409, json: { reason: "not_dead_lettered" } })
  })

  it("reports liveness always and readiness only when the streams exist", async () => {
    expect(await call("GET", "/healthz")).toMatchObject({ status: 200, json: { status: "ok" } })
    expect(await call("GET", "/readyz")).toMatchObject({ status: 200, json: { status: "ready" } })
    const bare = await CodeqClient.connect({ servers: nats.url(), naming: freshNaming() })
    const unprovisioned = await startHttpServer({ client: bare, auth: {}, port: 0, host: "127.0.0.1" })
    try {
      const res = await apiClient(unprovisioned.url)("GET", "/readyz")
      expect(res.status).toBe(503)
      expect(res.headers.get("retry-after")).toBe("2")
      expect(String(res.json.error)).toMatch(/stream .*_EVENTS does not exist/)
    } finally {
      await unprovisioned.close()
      await bare.close()
    }
  })

  it("serves an OpenAPI document generated from the request schemas, covering every route", async () => {
    const res = await call("GET", "/v1/codeq/openapi.json")
    expect(res.status).toBe(200)
    const doc = res.json as { openapi: string; paths: Record<string, Record<string, unknown>>; components: { schemas: Record<string, Record<string, unknown>> } }
    expect(doc.openapi).toBe("3.1.0")
    for (const r of apiRoutes(client(), { connected: true } as never)) {
      expect(doc.paths[r.path.replace(/:([A-Za-z]+)/g, "{$1}")]?.[r.method.toLowerCase()], `${r.method} ${r.path}`).toBeDefined()
    }
    const create = doc.components.schemas.CreateTaskRequest as { additionalProperties: boolean; required: Array<string>; properties: Record<string, Record<string, unknown>> }
    expect(create.additionalProperties).toBe(false)
    expect(create.required).toEqual(["command"])
    expect(create.properties.priority).toMatchObject({ minimum: 0, maximum: 9 })
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1] ?? "")
    expect(refs.length).toBeGreaterThan(10)
    for (const ref of refs) expect(doc.components.schemas[ref], ref).toBeDefined()
  })

  it("parents codeq.task.create on an HTTP server span whose parent is the inbound W3C or B3 context", async () => {
    const inboundTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
    const inboundSpan = "00f067aa0ba902b7"
    const cases: Array<Record<string, string>> = [
      { traceparent: `00-${inboundTrace}-${inboundSpan}-01`, tracestate: "vendor=opaque" },
      { "X-B3-TraceId": inboundTrace, "X-B3-SpanId": inboundSpan, "X-B3-Sampled": "1" },
      { b3: `${inboundTrace}-${inboundSpan}-1` }
    ]
    for (const headers of cases) {
      spans.reset()
      const cmd = command()
      const task = await create({ command: cmd }, headers)
      const server = spans.spans().find((s) => s.name === "POST /v1/codeq/tasks")
      const created = spans.spans().find((s) => s.name === "codeq.task.create")
      expect(server?.instrumentationScope.name).toBe("codeq/http")
      expect(server?.spanContext().traceId).toBe(inboundTrace)
      expect(server?.parentSpanContext?.spanId).toBe(inboundSpan)
      expect(created?.spanContext().traceId).toBe(inboundTrace)
      expect(created?.parentSpanContext?.spanId).toBe(server?.spanContext().spanId)
      expect(task.traceParent).toBe(`00-${inboundTrace}-${created?.spanContext().spanId}-01`)
      const claimed = await claim(cmd)
      expect(claimed.json.traceParent).toBe(task.traceParent)
      if (headers.tracestate !== undefined) expect(claimed.json.traceState).toBe("vendor=opaque")
    }
    expect(trace.getSpanContext(ROOT_CONTEXT)).toBeUndefined()
  })
})
