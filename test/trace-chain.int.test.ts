/**
 * The whole chain of one task with a webhook, through the real OTLP gRPC exporter into a real
 * receiver: create → claim → heartbeat → submit_result → webhook, each parent as DESIGN §6 says,
 * attributes exact and free of payload, URL, key and secrets; the producer's incoming traceparent
 * is the parent of the create.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { startBroker, type RunningBroker } from "../src/broker.js"
import { CodeqClient } from "../src/sdk/client.js"
import { contextFromTraceparent, parseTraceparent } from "../src/tracing/codec.js"
import { setupTracing, type TracingHandle } from "../src/tracing/setup.js"
import { brokerConfig, freshNaming, useNatsServer } from "./support/harness.js"
import { startOtlpReceiver, type OtlpReceiver } from "./support/otlpReceiver.js"

const nats = useNatsServer()
const quiet = { warn: () => undefined, info: () => undefined }

describe("a traced task from create to webhook, as the collector receives it", () => {
  let receiver: OtlpReceiver
  let tracing: TracingHandle
  let broker: RunningBroker
  let client: CodeqClient
  const naming = freshNaming()
  const webhookRequests: Array<Record<string, string | string[] | undefined>> = []
  const hook = createServer((req, res) => {
    webhookRequests.push(req.headers)
    req.resume()
    req.on("end", () => res.writeHead(204).end())
  })

  beforeAll(async () => {
    receiver = await startOtlpReceiver()
    tracing = setupTracing(
      { tracingEnabled: true, tracingOtlpEndpoint: receiver.endpoint, tracingOtlpInsecure: true, tracingServiceName: "codeq-test", tracingSampleRatio: 0 },
      { env: {}, logger: quiet }
    )
    await new Promise<void>((resolve) => hook.listen(0, "127.0.0.1", resolve))
    broker = await startBroker(brokerConfig(nats.url(), naming, { hmacSecret: "hook-secret-value" }))
    client = await CodeqClient.connect({ servers: nats.url(), naming })
  })
  afterAll(async () => {
    await client.close()
    await broker.stop()
    await tracing.shutdown(2_000)
    await receiver.stop()
    await new Promise((resolve) => hook.close(resolve))
  })

  it("exports the chain with the parents and attributes of DESIGN §6, the producer's traceparent as the root's parent", async () => {
    const upstream = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    const { port } = hook.address() as AddressInfo
    const webhook = `http://127.0.0.1:${port}/callback?token=url-secret`
    const task = await client
      .producer("acme")
      .create({ command: "render", payload: { secret: "payload-secret" }, priority: 6, webhook, idempotencyKey: "key-secret" }, { parent: contextFromTraceparent(upstream) })
    const claimed = await client.tasks.claim("acme", ["render"], { workerId: "worker-7", leaseSeconds: 30, waitSeconds: 10 })
    expect(claimed?.task.id).toBe(task.id)
    await client.tasks.heartbeat("acme", task.id, { workerId: "worker-7" }, 60)
    await client.tasks.settleLease("acme", task.id, { workerId: "worker-7" }, { type: "complete", result: { out: "result-secret" } })

    const names = ["codeq.task.create", "codeq.task.claim", "codeq.task.heartbeat", "codeq.task.submit_result", "codeq.webhook.task_result"]
    const spans = await receiver.waitForSpans((all) => names.every((name) => all.some((s) => s.name === name && s.attributes["codeq.task_id"] === task.id)), 20_000)
    const one = (name: string) => {
      const found = spans.filter((s) => s.name === name && s.attributes["codeq.task_id"] === task.id)
      expect(found).toHaveLength(1)
      const [span] = found
      if (span === undefined) throw new Error(`no ${name}`)
      return span
    }
    const create = one("codeq.task.create")
    const claim = one("codeq.task.claim")
    const heartbeat = one("codeq.task.heartbeat")
    const submit = one("codeq.task.submit_result")
    const delivery = one("codeq.webhook.task_result")

    // Ratio 0, but the producer's sampled parent is honoured (ParentBased).
    expect(create.traceId).toBe("4bf92f3577b34da6a3ce929d0e0e4736")
    expect(create.parentSpanId).toBe("00f067aa0ba902b7")
    for (const span of [claim, heartbeat, submit]) expect(span.parentSpanId).toBe(create.spanId)
    expect(delivery.parentSpanId).toBe(submit.spanId)
    expect(new Set([create, claim, heartbeat, submit, delivery].map((s) => s.traceId)).size).toBe(1)
    expect(webhookRequests[0]?.traceparent).toBe(`00-${delivery.traceId}-${delivery.spanId}-01`)

    expect(create.resource["service.name"]).toBe("codeq-test")
    expect([create.scope.name, claim.scope.name, heartbeat.scope.name, submit.scope.name, delivery.scope.name]).toEqual([
      "codeq/scheduler",
      "codeq/repository",
      "codeq/repository",
      "codeq/results",
      "codeq/result_callback"
    ])
    expect(create.attributes).toMatchObject({
      "codeq.command": "render",
      "codeq.priority": 6,
      "codeq.has_webhook": true,
      "codeq.has_idempotency_key": true,
      "codeq.tenant_id": "acme",
      "messaging.system": "nats",
      "messaging.operation.type": "publish"
    })
    expect(claim.attributes).toMatchObject({ "codeq.worker_id": "worker-7", "codeq.attempt": 1, "codeq.lease_seconds": 30 })
    expect(heartbeat.attributes).toMatchObject({ "codeq.worker_id": "worker-7", "codeq.extend_seconds": 60 })
    expect(delivery.attributes).toMatchObject({ "codeq.webhook.attempt": 1, "codeq.webhook.host": "127.0.0.1" })
    const everything = JSON.stringify(spans.map((s) => s.attributes))
    for (const secret of ["payload-secret", "result-secret", "url-secret", "key-secret", "hook-secret-value", "/callback"]) expect(everything).not.toContain(secret)
  })

  it("exports nothing for a task without a sampled parent at ratio 0, yet every event has a valid traceparent", async () => {
    const task = await client.producer("acme").create({ command: "quiet" })
    const claimed = await client.tasks.claim("acme", ["quiet"], { workerId: "worker-9", waitSeconds: 10 })
    expect(claimed?.task.id).toBe(task.id)
    await client.tasks.settleLease("acme", task.id, { workerId: "worker-9" }, { type: "complete" })
    expect(await tracing.flush(2_000)).toBe("flushed")
    expect(receiver.spans().filter((s) => s.attributes["codeq.task_id"] === task.id)).toEqual([])
    const history = await client.log.readTask("acme", task.id)
    expect(history.events.map((e) => e.event.type)).toEqual(["TaskCreated", "TaskClaimed", "TaskCompleted"])
    const contexts = history.events.map((e) => parseTraceparent(e.trace?.traceparent))
    for (const ctx of contexts) {
      expect(ctx).toBeDefined()
      expect(ctx?.traceFlags).toBe(0)
    }
    expect(new Set(contexts.map((c) => c?.traceId)).size).toBe(1)
    expect(new Set(contexts.map((c) => c?.spanId)).size).toBe(3)
    expect(history.events[1]?.trace?.parentSpanId).toBe(contexts[0]?.spanId)
  })
})
