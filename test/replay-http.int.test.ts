/**
 * A task's events and its rebuilt trace over HTTP: same tenant only (another tenant's task is a
 * 404, as for GET /v1/codeq/tasks/:id), any tenant's for an admin token, ids checked, and both
 * routes in the OpenAPI document.
 */
import { beforeAll, describe, expect, it } from "vitest"
import { setupTracing } from "../src/tracing/setup.js"
import { useNatsServer } from "./support/harness.js"
import { useHttpApi } from "./support/httpApi.js"
import { STATIC_TOKENS } from "./support/jwks.js"

const nats = useNatsServer()
// Tracing off, as by default: the propagator is installed all the same, so inbound context flows.
beforeAll(() => void setupTracing({}, { env: {}, logger: { warn: () => undefined, info: () => undefined } }))

describe("GET /v1/codeq/tasks/:id/events and /trace", () => {
  const { call } = useHttpApi(nats)
  const producer = STATIC_TOKENS.acmeProducer.token
  const worker = STATIC_TOKENS.acmeWorker.token

  /** A task created under an inbound traceparent, claimed, heartbeated and completed over HTTP. */
  const runTask = async (command: string) => {
    const created = await call("POST", "/v1/codeq/tasks", {
      token: producer,
      body: { command, payload: { n: 1 } },
      headers: { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", baggage: "user=alice" }
    })
    expect(created.status).toBe(202)
    const id = String(created.json.id)
    expect((await call("POST", "/v1/codeq/tasks/claim", { token: worker, body: { commands: [command], waitSeconds: 10 } })).json.id).toBe(id)
    expect((await call("POST", `/v1/codeq/tasks/${id}/heartbeat`, { token: worker, body: {} })).status).toBe(200)
    expect((await call("POST", `/v1/codeq/tasks/${id}/result`, { token: worker, body: { status: "COMPLETED", result: { ok: true } } })).status).toBe(200)
    return id
  }

  it("lists the task's events in log order with the trace headers of the span that wrote each", async () => {
    const id = await runTask("http-events")
    const res = await call("GET", `/v1/codeq/tasks/${id}/events`, { token: producer })
    expect(res.status).toBe(200)
    const events = res.json.events as Array<Record<string, unknown>>
    expect(res.json).toMatchObject({ taskId: id, tenant: "acme" })
    expect(events.map((e) => e.type)).toEqual(["TaskCreated", "TaskClaimed", "TaskHeartbeat", "TaskCompleted"])
    const create = events[0] ?? {}
    expect(create).toMatchObject({ prevSeq: 0, event: { type: "TaskCreated", command: "http-events", payload: { n: 1 } }, baggage: "user=alice" })
    expect(String(create.traceparent)).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/)
    const createSpan = String(create.traceparent).split("-")[2]
    for (const e of events.slice(1)) {
      expect(e.parentSpanId).toBe(createSpan)
      expect(String(e.traceparent)).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-/)
      expect(String(e.timeUnixNano)).toMatch(/^\d{19}$/)
      expect(String(e.spanStartUnixNano)).toMatch(/^\d{19}$/)
      expect(String(e.time)).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/)
    }
  })

  it("rebuilds the span tree: the create under its remote parent, transitions under the create, audited clean", async () => {
    const id = await runTask("http-trace")
    const res = await call("GET", `/v1/codeq/tasks/${id}/trace`, { token: producer })
    expect(res.status).toBe(200)
    expect(res.json).toMatchObject({ taskId: id, tenant: "acme", traceId: "0af7651916cd43dd8448eb211c80319c", command: "http-trace", status: "COMPLETED", attempts: 1, closed: true, problems: [], untraced: [] })
    const [root, ...others] = res.json.spans as Array<Record<string, unknown>>
    expect(others).toEqual([])
    expect(root).toMatchObject({ name: "codeq.task.create", scope: "codeq/scheduler", kind: "INTERNAL", parentSpanId: res.json.remoteParentSpanId })
    const children = root?.children as Array<Record<string, unknown>>
    expect(children.map((c) => c.name)).toEqual(["codeq.task.claim", "codeq.task.heartbeat", "codeq.task.submit_result"])
    expect(children[0]?.attributes).toMatchObject({ "codeq.task_id": id, "codeq.worker_id": "acme-worker-1", "codeq.attempt": 1, "codeq.event": "TaskClaimed" })
    for (const child of children) {
      expect(child.parentSpanId).toBe(root?.spanId)
      expect(BigInt(String(child.endTimeUnixNano))).toBeGreaterThanOrEqual(BigInt(String(child.startTimeUnixNano)))
    }
  })

  it("answers 404 for another tenant's task and the task for an admin of any tenant; 400 for a bad id, 401 without a token", async () => {
    const id = await runTask("http-tenants")
    for (const path of [`/v1/codeq/tasks/${id}/events`, `/v1/codeq/tasks/${id}/trace`]) {
      expect((await call("GET", path, { token: STATIC_TOKENS.globexProducer.token })).status).toBe(404)
      const admin = await call("GET", path, { token: STATIC_TOKENS.globexAdmin.token })
      expect(admin.status).toBe(200)
      expect(admin.json).toMatchObject({ taskId: id, tenant: "acme" })
      expect((await call("GET", path.replace(id, "not-a-uuid"), { token: producer })).status).toBe(400)
      expect((await call("GET", path.replace(id, "00000000-0000-4000-8000-000000000000"), { token: producer })).status).toBe(404)
      expect((await call("GET", path)).status).toBe(401)
    }
  })

  it("documents both routes in the OpenAPI document", async () => {
    const doc = (await call("GET", "/v1/codeq/openapi.json")).json as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>>; components: { schemas: Record<string, unknown> } }
    for (const path of ["/v1/codeq/tasks/{id}/events", "/v1/codeq/tasks/{id}/trace"]) expect(Object.keys(doc.paths[path]?.get?.responses ?? {})).toEqual(expect.arrayContaining(["200", "400", "404", "401"]))
    expect(Object.keys(doc.components.schemas)).toEqual(expect.arrayContaining(["TaskEvents", "TaskTrace", "TraceSpan"]))
  })
})
