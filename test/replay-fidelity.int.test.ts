/**
 * Replay's fidelity: a mixed run — tasks through the SDK and through HTTP, a retry after a nack,
 * a lease that runs out, a dead letter, heartbeats, webhooks that fail and then succeed or fail
 * for good against a real local HTTP receiver — traced live into an in-process OTLP receiver;
 * then the log alone is replayed, and every span the live code exported for an event must come
 * back with the same ids, parent, name, tracer, kind, trace state, attributes and status, the
 * same start and end to the nanosecond (both are on the event: Codeq-Span-Start and
 * Codeq-Span-End). The same run audits clean.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { startBroker, type RunningBroker } from "../src/broker.js"
import { startHttpServer, type RunningHttpServer } from "../src/http/index.js"
import { AuditTally, replayLog, wireTargetOf, type ReplaySpan, type TaskTrace } from "../src/replay/index.js"
import { CodeqClient } from "../src/sdk/client.js"
import { fail, nack, type Worker } from "../src/sdk/worker.js"
import { contextFromTraceparent } from "../src/tracing/codec.js"
import { setupTracing, type TracingHandle } from "../src/tracing/setup.js"
import { brokerConfig, freshNaming, useNatsServer, waitFor } from "./support/harness.js"
import { STATIC_TOKENS, apiClient, type ApiCall } from "./support/jwks.js"
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from "./support/otlpReceiver.js"

const nats = useNatsServer()
const quiet = { warn: () => undefined, info: () => undefined }
const TENANT = "acme"

/** The spans a transition writes its event from (the worker's processing and HTTP server spans write none). */
const EVENT_SPAN = /^codeq\.(task\.(create|claim|heartbeat|abandon|nack|submit_result|lease_expired|dead_letter|cancel|requeue|purge)|webhook\.task_result)$/

describe("replay rebuilds the live spans of a mixed run", () => {
  const naming = freshNaming()
  let receiver: OtlpReceiver
  let tracing: TracingHandle
  let broker: RunningBroker
  let client: CodeqClient
  let http: RunningHttpServer
  let api: ApiCall
  let worker: Worker | undefined
  /** Webhook receiver: each path fails with 500 as many times as planned (forever: Infinity), then 204. */
  const failuresLeft = new Map<string, number>()
  const hook = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    req.on("end", () => {
      const left = failuresLeft.get(req.url ?? "") ?? 0
      failuresLeft.set(req.url ?? "", left - 1)
      res.writeHead(left > 0 ? 500 : 204).end()
    })
  })
  let hookPort = 0

  beforeAll(async () => {
    receiver = await startOtlpReceiver()
    tracing = setupTracing(
      { tracingEnabled: true, tracingOtlpEndpoint: receiver.endpoint, tracingOtlpInsecure: true, tracingServiceName: "codeq-fidelity", tracingSampleRatio: 1 },
      { env: {}, logger: quiet, batch: { maxQueueSize: 10_000, maxExportBatchSize: 512, scheduledDelayMillis: 200 } }
    )
    await new Promise<void>((resolve) => hook.listen(0, "127.0.0.1", resolve))
    hookPort = (hook.address() as AddressInfo).port
    broker = await startBroker(brokerConfig(nats.url(), naming, { baseDelaySeconds: 0.2, maxDelaySeconds: 1, maxAttempts: 3 }))
    client = await CodeqClient.connect({ servers: nats.url(), naming })
    http = await startHttpServer({ client, auth: { staticTokens: Object.values(STATIC_TOKENS) }, port: 0, host: "127.0.0.1" })
    api = apiClient(http.url)
  })
  afterAll(async () => {
    await worker?.stop()
    await http?.close()
    await client?.close()
    await broker?.stop()
    await tracing?.shutdown(2_000)
    await receiver?.stop()
    await new Promise((resolve) => hook.close(resolve))
  })

  const types = async (taskId: string) => (await client.log.readTask(TENANT, taskId)).events.map((e) => e.event.type)
  const endsWith = (list: ReadonlyArray<string>, last: string) => list[list.length - 1] === last

  it("rebuilds 100 % of the event spans: ids, parents, names, tracers, kinds, attributes, status, start exact, end within 2 ms; and audits clean", { timeout: 120_000 }, async () => {
    const hookUrl = (name: string) => `http://127.0.0.1:${hookPort}/hook/${name}`
    failuresLeft.set("/hook/flaky", 2)
    failuresLeft.set("/hook/down", Number.POSITIVE_INFINITY)
    const producer = client.producer(TENANT)
    // One task first, so the measured run does not carry the connections' and JIT's first-use costs.
    const warmup = await producer.create({ command: "fid-warmup" })
    const warm = await client.tasks.claim(TENANT, ["fid-warmup"], { workerId: "warmup", waitSeconds: 10 })
    expect(warm?.task.id).toBe(warmup.id)
    await client.tasks.settleLease(TENANT, warmup.id, { workerId: "warmup" }, { type: "complete" })
    const upstream = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    const slow = await producer.create({ command: "fid-work", payload: { kind: "slow" }, webhook: hookUrl("flaky"), idempotencyKey: "fid-1" }, { parent: contextFromTraceparent(upstream) })
    const retried = await producer.create({ command: "fid-work", payload: { kind: "retry" }, priority: 7 })
    const dead = await producer.create({ command: "fid-work", payload: { kind: "dead" }, maxAttempts: 2, webhook: hookUrl("dlq") })
    const failed = await producer.create({ command: "fid-work", payload: { kind: "fail" }, webhook: hookUrl("down") })
    const expiring = await producer.create({ command: "fid-lease" })
    const held = await client.tasks.claim(TENANT, ["fid-lease"], { workerId: "silent", leaseSeconds: 1, waitSeconds: 10 })
    expect(held?.task.id).toBe(expiring.id)

    // Through HTTP: create under an inbound traceparent, claim, heartbeat, fail; its webhook succeeds.
    const created = await api("POST", "/v1/codeq/tasks", {
      token: STATIC_TOKENS.acmeProducer.token,
      body: { command: "fid-http", priority: 4, webhook: hookUrl("http") },
      headers: { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tracestate: "vendor=opaque" }
    })
    expect(created.status).toBe(202)
    const viaHttp = String(created.json.id)
    const claimed = await api("POST", "/v1/codeq/tasks/claim", { token: STATIC_TOKENS.acmeWorker.token, body: { commands: ["fid-http"], leaseSeconds: 30, waitSeconds: 10 } })
    expect(claimed.json.id).toBe(viaHttp)
    expect((await api("POST", `/v1/codeq/tasks/${viaHttp}/heartbeat`, { token: STATIC_TOKENS.acmeWorker.token, body: { extendSeconds: 60 } })).status).toBe(200)
    expect((await api("POST", `/v1/codeq/tasks/${viaHttp}/result`, { token: STATIC_TOKENS.acmeWorker.token, body: { status: "FAILED", error: "bad input" } })).status).toBe(200)

    // Through the SDK: a worker that takes its time (heartbeats), retries, dead-letters, fails,
    // and rescues the task whose 1 s lease runs out.
    worker = client.worker(TENANT, { workerId: "fid-worker", leaseSeconds: 3 })
    void worker.run(
      ["fid-work", "fid-lease"],
      async (task, job) => {
        const kind = (task.payload as { kind?: string } | undefined)?.kind
        // The handler's own work time is the scenario (a heartbeat falls in it), not a synchronisation.
        if (kind === "slow") await new Promise((resolve) => setTimeout(resolve, 1_500))
        if (kind === "retry" && job.attempt === 1) return nack("not yet", 0)
        if (kind === "dead") return nack("never", 0)
        if (kind === "fail") return fail("broken input")
        return { done: kind ?? "lease" }
      },
      { concurrency: 8 }
    )
    const finals: ReadonlyArray<readonly [string, string]> = [
      [slow.id, "WebhookDelivered"],
      [retried.id, "TaskCompleted"],
      [dead.id, "WebhookDelivered"],
      [failed.id, "WebhookFailed"],
      [expiring.id, "TaskCompleted"],
      [viaHttp, "WebhookDelivered"]
    ]
    await waitFor(
      async () => {
        for (const [id, last] of finals) {
          const list = await types(id)
          if (!endsWith(list, last) || (last === "WebhookFailed" && list.filter((t) => t === "WebhookFailed").length < 3)) return false
        }
        return true
      },
      { timeoutMs: 60_000, what: "every task to reach its end" }
    )
    expect(await types(slow.id)).toEqual(expect.arrayContaining(["TaskHeartbeat", "WebhookFailed", "WebhookDelivered"]))
    expect(await types(retried.id)).toEqual(["TaskCreated", "TaskClaimed", "TaskNacked", "TaskClaimed", "TaskCompleted"])
    expect(await types(dead.id)).toEqual(["TaskCreated", "TaskClaimed", "TaskNacked", "TaskClaimed", "TaskNacked", "TaskDeadLettered", "WebhookDelivered"])
    expect(await types(expiring.id)).toEqual(["TaskCreated", "TaskClaimed", "TaskLeaseExpired", "TaskClaimed", "TaskCompleted"])
    expect(await types(viaHttp)).toEqual(["TaskCreated", "TaskClaimed", "TaskHeartbeat", "TaskFailed", "WebhookDelivered"])
    const ids = new Set(finals.map(([id]) => id))
    const eventCount = (await Promise.all([...ids].map(types))).reduce((sum, list) => sum + list.length, 0)

    // Live: every event span of these tasks, once the exporter has sent them.
    const liveOf = (all: ReadonlyArray<ReceivedSpan>) => all.filter((s) => EVENT_SPAN.test(s.name) && ids.has(String(s.attributes["codeq.task_id"])))
    const received = await receiver.waitForSpans((all) => liveOf(all).length >= eventCount, 30_000)
    const live = liveOf(received)

    // Replayed: the log alone.
    const traces: Array<TaskTrace> = []
    await replayLog({ nc: client.nc, wire: wireTargetOf(client.nc, [nats.url()]) }, naming, { detail: "spans" }, (trace) => void traces.push(trace))
    const tally = new AuditTally()
    for (const trace of traces) tally.add(trace)
    const rebuilt = new Map<string, ReplaySpan>()
    for (const trace of traces) if (ids.has(trace.taskId)) for (const span of trace.spans) rebuilt.set(span.spanId, span)

    expect(tally.summary().problems, JSON.stringify(tally.summary().rules, null, 2)).toBe(0)
    expect(traces.filter((t) => ids.has(t.taskId)).every((t) => t.closed && t.untraced.length === 0)).toBe(true)
    expect(rebuilt.size).toBe(eventCount)
    expect(live.length).toBe(eventCount)

    const mismatches: Array<string> = []
    for (const l of live) {
      const r = rebuilt.get(l.spanId)
      if (r === undefined) {
        mismatches.push(`${l.name} ${l.spanId}: not rebuilt`)
        continue
      }
      const same = (what: string, a: unknown, b: unknown) => {
        if (JSON.stringify(a) !== JSON.stringify(b)) mismatches.push(`${l.name} ${l.spanId} ${what}: live ${JSON.stringify(a)}, replay ${JSON.stringify(b)}`)
      }
      same("trace id", l.traceId, r.traceId)
      same("parent", l.parentSpanId, r.parentSpanId)
      same("name", l.name, r.name)
      same("tracer", l.scope.name, r.scope)
      same("kind", l.kind, r.kind + 1)
      same("trace state", l.traceState, r.traceState)
      same("attributes", sorted(l.attributes), sorted(r.attributes))
      same("status", l.status, { code: r.status.code, message: r.status.message })
      same("start", l.start.toString(), r.startNs)
      // The live span ends when its event is handed to the log, and the event says when
      // (Codeq-Span-End): the rebuilt end is the same nanosecond.
      same("end", l.end.toString(), r.endNs)
    }
    console.log(`${live.length} live event spans compared with their rebuilt twins`)
    expect(mismatches).toEqual([])
  })
})

const sorted = (attributes: Readonly<Record<string, unknown>>) => Object.fromEntries(Object.entries(attributes).sort(([a], [b]) => a.localeCompare(b)))
