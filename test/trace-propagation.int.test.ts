/**
 * Trace context to the letter, from a create to the webhook it causes (issue 11): B3 single and
 * multi headers when OTEL_PROPAGATORS asks for them, W3C Level 2 flags (random, 02) kept as
 * received, tracestate with Level 2 keys kept in order, and the create's baggage sent on the
 * webhook — on a real HTTP receiver, through the HTTP API and the SDK.
 */
import { ROOT_CONTEXT, propagation, trace } from "@opentelemetry/api"
import { createServer, type IncomingHttpHeaders } from "node:http"
import type { AddressInfo } from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { setupTracing } from "../src/tracing/setup.js"
import { useHttpApi } from "./support/httpApi.js"
import { useNatsServer, waitFor } from "./support/harness.js"
import { STATIC_TOKENS } from "./support/jwks.js"

// Before the broker and the API exist: the propagator they use is the one installed here.
setupTracing({ tracingEnabled: false }, { env: { OTEL_PROPAGATORS: "tracecontext,baggage,b3,b3multi" }, logger: { warn: () => undefined, info: () => undefined } })

const nats = useNatsServer()
const api = useHttpApi(nats)

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
const CALLER_SPAN = "00f067aa0ba902b7"

const received: Array<{ readonly taskId: string; readonly headers: IncomingHttpHeaders }> = []
let hookUrl = ""
const hook = createServer((req, res) => {
  let body = ""
  req.on("data", (chunk: Buffer) => (body += chunk.toString()))
  req.on("end", () => {
    received.push({ taskId: (JSON.parse(body) as { taskId: string }).taskId, headers: req.headers })
    res.writeHead(204).end()
  })
})
beforeAll(async () => {
  await new Promise<void>((resolve) => hook.listen(0, "127.0.0.1", resolve))
  hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`
})
afterAll(() => new Promise<void>((resolve) => hook.close(() => resolve())))

const webhookOf = (taskId: string) => waitFor(() => received.find((r) => r.taskId === taskId), { what: `the webhook of ${taskId}` })

const finish = async (taskId: string) => {
  const claimed = await api.call("POST", "/v1/codeq/tasks/claim", { token: STATIC_TOKENS.acmeWorker.token, body: { commands: ["traced"], waitSeconds: 10 } })
  expect(claimed.json.id).toBe(taskId)
  const result = await api.call("POST", `/v1/codeq/tasks/${taskId}/result`, { token: STATIC_TOKENS.acmeWorker.token, body: { status: "COMPLETED", result: { ok: true } } })
  expect(result.status).toBe(200)
}

describe("trace context on the webhook", () => {
  it("carries W3C with flags 03 kept, tracestate with '@' keys in order, the create's baggage, and B3 single and multi", async () => {
    const created = await api.call("POST", "/v1/codeq/tasks", {
      token: STATIC_TOKENS.acmeProducer.token,
      headers: { traceparent: `00-${TRACE_ID}-${CALLER_SPAN}-03`, tracestate: "foo@=1,bar=2,tenant@vendor=x", baggage: "user=alice,tier=gold" },
      body: { command: "traced", webhook: hookUrl }
    })
    expect(created.status).toBe(202)
    const taskId = String(created.json.id)
    await finish(taskId)
    const { headers } = await webhookOf(taskId)

    const [version, traceId, spanId, flags] = String(headers.traceparent).split("-")
    expect([version, traceId, flags]).toEqual(["00", TRACE_ID, "03"])
    expect(spanId).not.toBe(CALLER_SPAN)
    expect(headers.tracestate).toBe("foo@=1,bar=2,tenant@vendor=x")
    expect(String(headers.baggage).split(",").sort()).toEqual(["tier=gold", "user=alice"])
    expect(headers.b3).toBe(`${TRACE_ID}-${spanId}-1`)
    expect(headers["x-b3-traceid"]).toBe(TRACE_ID)
    expect(headers["x-b3-spanid"]).toBe(spanId)
    expect(headers["x-b3-sampled"]).toBe("1")
    // The webhook span is the one that wrote WebhookDelivered: the request continues it.
    const history = await api.client().log.readTask("acme", taskId)
    const delivered = history.events.find((e) => e.event.type === "WebhookDelivered")
    expect(delivered?.trace?.traceparent).toBe(headers.traceparent)
  })

  it("keeps the random flag of an unsampled SDK caller (02) from the create to the webhook", async () => {
    const caller = trace.setSpanContext(ROOT_CONTEXT, { traceId: TRACE_ID, spanId: CALLER_SPAN, traceFlags: 0x02, isRemote: true })
    const parent = propagation.setBaggage(caller, propagation.createBaggage({ order: { value: "42" } }))
    const task = await api.client().producer("acme").create({ command: "traced", webhook: hookUrl }, { parent })
    await finish(task.id)
    const { headers } = await webhookOf(task.id)
    expect(String(headers.traceparent)).toMatch(new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-02$`))
    expect(headers["x-b3-sampled"]).toBe("0")
    expect(headers.baggage).toBe("order=42")
    const history = await api.client().log.readTask("acme", task.id)
    expect(history.events.every((e) => e.trace?.traceparent.endsWith("-02"))).toBe(true)
  })
})
