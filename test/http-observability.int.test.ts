/**
 * What an operator sees of a running broker: `/metrics` with the Node process metrics beside
 * codeq's series, and request logs in which probes and scrapes stay at debug.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startBroker, type RunningBroker } from "../src/broker.js"
import { startHttpServer, type HttpLogEntry, type RunningHttpServer } from "../src/http/index.js"
import { CodeqClient } from "../src/sdk/client.js"
import { brokerConfig, freshNaming, useNatsServer } from "./support/harness.js"
import { STATIC_TOKENS, apiClient, type ApiCall } from "./support/jwks.js"

const nats = useNatsServer()

describe("HTTP API: process metrics and quiet probes", () => {
  const naming = freshNaming()
  const entries: Array<HttpLogEntry> = []
  let broker: RunningBroker
  let client: CodeqClient
  let http: RunningHttpServer
  let call: ApiCall

  beforeAll(async () => {
    broker = await startBroker(brokerConfig(nats.url(), naming))
    client = await CodeqClient.connect({ servers: nats.url(), naming })
    http = await startHttpServer({
      client,
      auth: { staticTokens: Object.values(STATIC_TOKENS) },
      port: 0,
      host: "127.0.0.1",
      metrics: broker.metrics,
      log: (entry) => entries.push(entry)
    })
    call = apiClient(http.url)
  })
  afterAll(async () => {
    await http.close()
    await client.close()
    await broker.stop()
  })

  const lastFor = (route: string) => entries.findLast((e) => e.route === route)

  it("serves Node process metrics under their standard names beside codeq's series", async () => {
    const res = await fetch(`${http.url}/metrics`)
    expect(res.status).toBe(200)
    const text = await res.text()
    for (const series of [
      "process_cpu_user_seconds_total",
      "process_cpu_seconds_total",
      "process_resident_memory_bytes",
      "process_start_time_seconds",
      "nodejs_eventloop_lag_seconds",
      "nodejs_heap_size_used_bytes",
      "nodejs_active_handles_total",
      "codeq_task_created_total"
    ])
      expect(text, series).toMatch(new RegExp(`^# TYPE ${series} `, "m"))
    expect(text).not.toMatch(/^# TYPE codeq_process_/m)
    // Twice in a row: the process series are registered once, not per scrape.
    expect((await fetch(`${http.url}/metrics`)).status).toBe(200)
  })

  it("logs health, readiness and metrics requests at debug, ready or not", async () => {
    expect((await call("GET", "/readyz")).status).toBe(200)
    expect((await call("GET", "/healthz")).status).toBe(200)
    await fetch(`${http.url}/metrics`)
    expect(lastFor("/readyz")).toMatchObject({ level: "debug", status: 200 })
    expect(lastFor("/healthz")).toMatchObject({ level: "debug", status: 200 })
    expect(lastFor("/metrics")).toMatchObject({ level: "debug", status: 200 })

    // Not ready (the streams of this namespace do not exist): a 503, still at debug.
    const bare = await CodeqClient.connect({ servers: nats.url(), naming: freshNaming() })
    const logged: Array<HttpLogEntry> = []
    const unprovisioned = await startHttpServer({ client: bare, auth: {}, port: 0, host: "127.0.0.1", log: (entry) => logged.push(entry) })
    try {
      expect((await apiClient(unprovisioned.url)("GET", "/readyz")).status).toBe(503)
      expect(logged.find((e) => e.route === "/readyz")).toMatchObject({ level: "debug", status: 503 })
    } finally {
      await unprovisioned.close()
      await bare.close()
    }
  })

  it("still logs API requests at info, 4xx at warn", async () => {
    const created = await call("POST", "/v1/codeq/tasks", { token: STATIC_TOKENS.acmeProducer.token, body: { command: "observed" } })
    expect(created.status).toBe(202)
    expect(lastFor("/v1/codeq/tasks")).toMatchObject({ level: "info", status: 202, tenant: "acme" })
    await call("POST", "/v1/codeq/tasks", { token: STATIC_TOKENS.acmeProducer.token, body: { command: "a.b" } })
    expect(lastFor("/v1/codeq/tasks")).toMatchObject({ level: "warn", status: 400 })
  })
})
