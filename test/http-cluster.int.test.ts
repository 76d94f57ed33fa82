import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startBroker, type RunningBroker } from "../src/broker.js"
import { startHttpServer, type RunningHttpServer } from "../src/http/index.js"
import { CodeqClient } from "../src/sdk/client.js"
import { claimsStream } from "../streams/definitions.js"
import { brokerConfig, freshNaming, useNatsServer, waitFor } from "./support/harness.js"
import { STATIC_TOKENS, apiClient, type ApiCall } from "./support/jwks.js"

const nats = useNatsServer({ ownServer: true })

describe("HTTP API: many instances behind one address, and NATS outages", () => {
  const naming = freshNaming()
  const instances: Array<{ broker: RunningBroker; client: CodeqClient; http: RunningHttpServer; call: ApiCall }> = []
  const producer = STATIC_TOKENS.acmeProducer.token
  const worker = STATIC_TOKENS.acmeWorker.token
  const at = (i: number) => {
    const instance = instances[i]
    if (instance === undefined) throw new Error(`no instance ${i}`)
    return instance.call
  }

  beforeAll(async () => {
    for (let i = 0; i < 2; i++) {
      const broker = await startBroker(brokerConfig(nats.url(), naming))
      const client = await CodeqClient.connect({ servers: nats.url(), naming, ackTimeoutMs: 2_000 })
      const http = await startHttpServer({ client, auth: { staticTokens: Object.values(STATIC_TOKENS) }, port: 0, host: "127.0.0.1" })
      instances.push({ broker, client, http, call: apiClient(http.url) })
    }
  })
  afterAll(async () => {
    for (const { broker, client, http } of instances) {
      await http.close()
      await client.close()
      await broker.stop()
    }
  })

  it("heartbeats and completes through one instance a task claimed through the other", async () => {
    const created = await at(0)("POST", "/v1/codeq/tasks", { token: producer, body: { command: "spread", payload: { n: 1 } } })
    const id = String(created.json.id)
    const claimed = await at(0)("POST", "/v1/codeq/tasks/claim", { token: worker, body: { commands: ["spread"], leaseSeconds: 30, waitSeconds: 10 } })
    expect(claimed.json).toMatchObject({ id, status: "IN_PROGRESS" })
    const hb = await at(1)("POST", `/v1/codeq/tasks/${id}/heartbeat`, { token: worker, body: { extendSeconds: 60 } })
    expect(hb.status).toBe(200)
    const done = await at(1)("POST", `/v1/codeq/tasks/${id}/result`, { token: worker, body: { status: "COMPLETED", result: { via: "instance 1" } } })
    expect(done).toMatchObject({ status: 200, json: { status: "COMPLETED" } })
    expect((await at(0)("GET", `/v1/codeq/tasks/${id}/result`, { token: producer })).json.result).toMatchObject({ result: { via: "instance 1" } })
    const client = instances[0]?.client
    if (client === undefined) throw new Error("no client")
    const history = await client.log.readTask("acme", id)
    expect(history.events.map((e) => e.event.type)).toEqual(["TaskCreated", "TaskClaimed", "TaskHeartbeat", "TaskCompleted"])
    // The claim message was acked through the handle in the log: the work queue is empty.
    const jsm = await client.nc.jetstreamManager()
    await waitFor(async () => (await jsm.streams.info(claimsStream(naming))).state.messages === 0, { what: "the claim message to be acked" })
  })

  it("answers 503 with Retry-After while NATS is down, and serves again once it is back", async () => {
    const call = at(0)
    await nats.server().kill()
    await waitFor(async () => (await call("GET", "/readyz")).status === 503, { what: "readiness to drop" })
    const ready = await call("GET", "/readyz")
    expect(ready.headers.get("retry-after")).toBe("2")
    expect(ready.json.error).toBe("NATS is not connected")
    const requests = [
      call("POST", "/v1/codeq/tasks", { token: producer, body: { command: "outage" } }),
      call("POST", "/v1/codeq/tasks/claim", { token: worker, body: { commands: ["outage"], waitSeconds: 5 } }),
      call("GET", "/v1/codeq/tasks/00000000-0000-4000-8000-000000000000", { token: producer })
    ]
    for (const res of await Promise.all(requests)) {
      expect(res).toMatchObject({ status: 503, json: { error: "NATS is unreachable" } })
      expect(res.headers.get("retry-after")).toBe("2")
    }
    expect((await call("GET", "/healthz")).status).toBe(200)

    await nats.server().restart()
    await waitFor(async () => (await call("GET", "/readyz")).status === 200, { what: "readiness to return", timeoutMs: 30_000 })
    expect((await call("POST", "/v1/codeq/tasks", { token: producer, body: { command: "outage" } })).status).toBe(202)
  })
})
