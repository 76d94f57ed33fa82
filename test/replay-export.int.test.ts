/**
 * Traces the head sampler dropped are in the log all the same: at sample ratio 0 nothing reaches
 * the collector live, yet replay rebuilds every task's full tree, and `codeq replay --export`
 * (the real binary) delivers those spans to an OTLP receiver with their original ids, parents and
 * times. The OTLP/JSON output carries the same spans in the JSON mapping.
 */
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startBroker, type RunningBroker } from "../src/broker.js"
import { replayLog, wireTargetOf, type TaskTrace } from "../src/replay/index.js"
import { CodeqClient } from "../src/sdk/client.js"
import { fail, type Worker } from "../src/sdk/worker.js"
import { setupTracing, type TracingHandle } from "../src/tracing/setup.js"
import { brokerConfig, freshNaming, useNatsServer, waitFor } from "./support/harness.js"
import { codeqEnv, runCodeq, type CodeqRun } from "./support/cli.js"
import { startOtlpReceiver, type OtlpReceiver } from "./support/otlpReceiver.js"

const nats = useNatsServer()
const naming = freshNaming()
const quiet = { warn: () => undefined, info: () => undefined }
const TENANT = "acme"

/** `codeq replay <args>` through the built binary, naming its exported service. */
const codeq = (args: ReadonlyArray<string>): Promise<CodeqRun> =>
  runCodeq(["replay", ...args], codeqEnv(nats.url(), naming, { OTEL_SERVICE_NAME: "codeq-restored" }))

describe("replay restores the traces the sampler dropped", () => {
  let live: OtlpReceiver
  let restored: OtlpReceiver
  let tracing: TracingHandle
  let broker: RunningBroker
  let client: CodeqClient
  let worker: Worker | undefined
  const hook = createServer((req, res) => {
    req.resume()
    req.on("end", () => res.writeHead(204).end())
  })

  beforeAll(async () => {
    live = await startOtlpReceiver()
    restored = await startOtlpReceiver()
    tracing = setupTracing(
      { tracingEnabled: true, tracingOtlpEndpoint: live.endpoint, tracingOtlpInsecure: true, tracingSampleRatio: 0 },
      { env: {}, logger: quiet, batch: { maxQueueSize: 10_000, maxExportBatchSize: 512, scheduledDelayMillis: 200 } }
    )
    await new Promise<void>((resolve) => hook.listen(0, "127.0.0.1", resolve))
    broker = await startBroker(brokerConfig(nats.url(), naming))
    client = await CodeqClient.connect({ servers: nats.url(), naming })
  })
  afterAll(async () => {
    await worker?.stop()
    await client?.close()
    await broker?.stop()
    await tracing?.shutdown(2_000)
    await live?.stop()
    await restored?.stop()
    await new Promise((resolve) => hook.close(resolve))
  })

  it("exports nothing live at ratio 0, rebuilds every tree from the log, and re-exports it with the original ids", { timeout: 120_000 }, async () => {
    const { port } = hook.address() as AddressInfo
    const producer = client.producer(TENANT)
    const tasks = [
      await producer.create({ command: "dropped", payload: { n: 1 }, webhook: `http://127.0.0.1:${port}/done` }),
      await producer.create({ command: "dropped", payload: { n: 2 } }),
      await producer.create({ command: "dropped", payload: { n: 3, fail: true } })
    ]
    worker = client.worker(TENANT, { workerId: "ratio-zero" })
    void worker.run(["dropped"], (task) => ((task.payload as { fail?: boolean }).fail === true ? fail("no") : { ok: true }), { concurrency: 4 })
    const ids = new Set(tasks.map((t) => t.id))
    const history = async (id: string) => (await client.log.readTask(TENANT, id)).events
    await waitFor(async () => (await Promise.all(tasks.map((t) => history(t.id)))).every((events, i) => events.at(-1)?.event.type === (i === 0 ? "WebhookDelivered" : i === 1 ? "TaskCompleted" : "TaskFailed")), {
      what: "the tasks to end"
    })
    expect(await tracing.flush(2_000)).toBe("flushed")
    expect(live.spans().filter((s) => ids.has(String(s.attributes["codeq.task_id"])))).toEqual([])

    // What the log says each span is: ids from the traceparent, parent from Codeq-Parent-Span.
    const logged = new Map<string, { traceId: string; parent: string | undefined; start: string | undefined }>()
    for (const t of tasks)
      for (const e of await history(t.id)) {
        const [, traceId = "", spanId = "", flags = ""] = e.trace?.traceparent.split("-") ?? []
        expect(flags).toBe("00")
        logged.set(spanId, { traceId, parent: e.trace?.parentSpanId, start: e.trace?.spanStart })
      }

    const traces: Array<TaskTrace> = []
    await replayLog({ nc: client.nc, wire: wireTargetOf(client.nc, [nats.url()]) }, naming, { detail: "spans" }, (trace) => void traces.push(trace))
    const mine = traces.filter((t) => ids.has(t.taskId))
    expect(mine).toHaveLength(3)
    for (const trace of mine) {
      expect(trace.closed).toBe(true)
      expect(trace.problems).toEqual([])
      expect(trace.spans.map((s) => s.name)[0]).toBe("codeq.task.create")
      expect(trace.spans.every((s) => s.traceFlags === 0)).toBe(true)
    }
    expect(mine.flatMap((t) => t.spans.map((s) => s.spanId)).sort()).toEqual([...logged.keys()].sort())

    const run = await codeq(["--export", restored.endpoint, "--insecure"])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stderr).toMatch(/exported \d+ spans to 127\.0\.0\.1:\d+/)
    const received = await restored.waitForSpans((all) => all.filter((s) => logged.has(s.spanId)).length >= logged.size, 20_000)
    const back = received.filter((s) => logged.has(s.spanId))
    expect(back).toHaveLength(logged.size)
    for (const span of back) {
      const expected = logged.get(span.spanId)
      expect(span.traceId).toBe(expected?.traceId)
      expect(span.parentSpanId).toBe(expected?.parent)
      expect(span.start.toString()).toBe(expected?.start)
      expect(span.end).toBeGreaterThanOrEqual(span.start)
      expect(span.resource["service.name"]).toBe("codeq-restored")
    }
    const failedSubmit = back.find((s) => s.name === "codeq.task.submit_result" && s.attributes["codeq.status"] === "FAILED")
    expect(failedSubmit?.status.code).toBe(2)

    // The same spans as OTLP/JSON lines, in the proto3 JSON mapping.
    const json = await codeq(["--format", "otlp-json", "--task", tasks[0]?.id ?? ""])
    expect(json.code, json.stderr).toBe(0)
    const lines = json.stdout.trim().split("\n").map((line) => JSON.parse(line) as { resourceSpans: Array<{ scopeSpans: Array<{ scope: { name: string }; spans: Array<Record<string, unknown>> }> }> })
    const spans = lines.flatMap((l) => l.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans)))
    expect(spans.map((s) => s.name)).toEqual(["codeq.task.create", "codeq.task.claim", "codeq.task.submit_result", "codeq.webhook.task_result"])
    for (const s of spans) {
      expect(s.traceId).toMatch(/^[0-9a-f]{32}$/)
      expect(s.spanId).toMatch(/^[0-9a-f]{16}$/)
      expect(s.startTimeUnixNano).toMatch(/^\d{19}$/)
      expect(logged.get(String(s.spanId))?.start).toBe(s.startTimeUnixNano)
    }
  })
})
