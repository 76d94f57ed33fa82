/**
 * `codeq serve` as a real process, tracing to a real OTLP gRPC receiver: SIGTERM in the middle of
 * 200 tasks in flight over HTTP. The process must exit 0 — within 10 s: the span flush has a 5 s
 * deadline (DESIGN §6), so a process that waits on anything else (a long-poll, a lost server) is
 * caught, with margin for a loaded machine — and every task that finished
 * must have all its spans at the receiver (drain HTTP, stop consumers, then flush — in that order).
 */
import { describe, expect, it } from "vitest"
import { spawn } from "node:child_process"
import { CodeqClient } from "../src/sdk/client.js"
import { parseTraceparent } from "../src/tracing/codec.js"
import { freePort } from "../src/testing/natsServer.js"
import { freshNaming, useNatsServer, waitFor } from "./support/harness.js"
import { startOtlpReceiver } from "./support/otlpReceiver.js"

const nats = useNatsServer()
const PRODUCER = "shutdown-producer-token"
const WORKER = "shutdown-worker-token"

describe("codeq serve on SIGTERM", () => {
  it("exits 0 within 10 s during 200 in-flight tasks, and the receiver has every span of every finished task", async () => {
    const receiver = await startOtlpReceiver()
    const naming = freshNaming()
    const port = await freePort()
    const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", "serve"], {
      env: {
        ...process.env,
        NATS_URL: nats.url(),
        CODEQ_STREAM_PREFIX: naming.streamPrefix,
        CODEQ_SUBJECT_ROOT: naming.subjectRoot,
        CODEQ_HTTP_PORT: String(port),
        CODEQ_HTTP_HOST: "127.0.0.1",
        CODEQ_HTTP_STATIC_TOKENS: JSON.stringify([
          { token: PRODUCER, tenant: "acme", subject: "producer", role: "producer" },
          { token: WORKER, tenant: "acme", subject: "worker-1", role: "worker" }
        ]),
        CODEQ_TRACING_ENABLED: "true",
        CODEQ_TRACING_OTLP_ENDPOINT: receiver.endpoint,
        CODEQ_TRACING_OTLP_INSECURE: "true",
        OTEL_EXPORTER_OTLP_ENDPOINT: "",
        OTEL_SERVICE_NAME: ""
      },
      stdio: ["ignore", process.env.CODEQ_TEST_CHILD_LOGS ? "inherit" : "ignore", "inherit"]
    })
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
    try {
      const base = `http://127.0.0.1:${port}`
      await waitFor(async () => (await fetch(`${base}/readyz`)).ok, { timeoutMs: 30_000, what: "the broker to be ready" })
      const call = async (path: string, token: string, body: unknown) => {
        const res = await fetch(`${base}${path}`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify(body) })
        return { status: res.status, json: res.status === 204 ? undefined : ((await res.json()) as { id?: string }) }
      }
      const created: Array<string> = []
      let finished = 0
      let signalled: (() => void) | undefined
      const halfway = new Promise<void>((resolve) => (signalled = resolve))
      const runTask = async () => {
        const create = await call("/v1/codeq/tasks", PRODUCER, { command: "job", payload: { n: 1 } })
        if (create.status !== 202 || create.json?.id === undefined) return
        created.push(create.json.id)
        const claim = await call("/v1/codeq/tasks/claim", WORKER, { commands: ["job"], waitSeconds: 2 })
        const id = claim.json?.id
        if (claim.status !== 200 || id === undefined) return
        await call(`/v1/codeq/tasks/${id}/heartbeat`, WORKER, { extendSeconds: 60 })
        const result = await call(`/v1/codeq/tasks/${id}/result`, WORKER, { status: "COMPLETED", result: { ok: true } })
        if (result.status === 200 && ++finished === 100) signalled?.()
      }
      const runs = Array.from({ length: 200 }, () => runTask().catch(() => undefined))
      await halfway
      const signalledAt = Date.now()
      child.kill("SIGTERM")
      const code = await exited
      const tookMs = Date.now() - signalledAt
      await Promise.all(runs)
      expect(code).toBe(0)
      expect(tookMs).toBeLessThan(10_000)

      const client = await CodeqClient.connect({ servers: nats.url(), naming })
      const finishedHistories = []
      for (const id of created) {
        const history = await client.log.readTask("acme", id)
        if (history.events.some((e) => e.event.type === "TaskCompleted")) finishedHistories.push(history)
      }
      await client.close()
      expect(finishedHistories.length).toBeGreaterThanOrEqual(100)
      // Every event of a finished task was written by a span; each of those spans reached the receiver.
      const received = new Set(receiver.spans().map((s) => s.spanId))
      const missing = finishedHistories.flatMap((h) =>
        h.events.filter((e) => !received.has(parseTraceparent(e.trace?.traceparent)?.spanId ?? "")).map((e) => `${e.event.taskId} ${e.event.type}`)
      )
      expect(missing).toEqual([])
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL")
      await receiver.stop()
    }
  }, 120_000)
})

describe("an embedded broker stopped", () => {
  it("leaves no timer holding its process (an application exits when it is done)", async () => {
    const naming = freshNaming()
    // An application's own process: the broker from the library, started and stopped; then what
    // still keeps its event loop alive (unref'd timers are not listed), read one turn later.
    const script = [
      'const { startBroker } = await import("./src/broker.ts")',
      'const { BrokerConfig } = await import("./src/config/config.ts")',
      'const { effectiveVariables, loadConfig } = await import("./src/config/configFile.ts")',
      "const broker = await startBroker(await loadConfig(BrokerConfig, await effectiveVariables()))",
      "await broker.stop()",
      "setImmediate(() => process.stdout.write(JSON.stringify(process.getActiveResourcesInfo()) + '\\n'))"
    ].join("\n")
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      env: { ...process.env, NATS_URL: nats.url(), CODEQ_STREAM_PREFIX: naming.streamPrefix, CODEQ_SUBJECT_ROOT: naming.subjectRoot, LOG_LEVEL: "warn" },
      stdio: ["ignore", "pipe", "inherit"]
    })
    let out = ""
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()))
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve))
    expect(code).toBe(0)
    const held = JSON.parse(out.trim().split("\n").at(-1) ?? "null") as Array<string>
    // Before, a 5 s sleep raced against the settling effects stayed armed after stop.
    expect(held.filter((resource) => resource === "Timeout")).toEqual([])
  })
})
