/**
 * A log that does not answer (issue 9): JetStream's "no responders" — a stream leader being elected,
 * or streams not provisioned — is a retryable `unavailable`, retried briefly inside the client, and
 * over HTTP a 503 with Retry-After that does not blame provisioning.
 */
import { afterAll, describe, expect, it } from "vitest"
import { startHttpServer } from "../src/http/index.js"
import { CodeqClient } from "../src/sdk/client.js"
import { LogError } from "../src/eventlog/errors.js"
import { eventsStream } from "../streams/definitions.js"
import { freshNaming, provision, useNatsServer, waitFor } from "./support/harness.js"
import { STATIC_TOKENS, apiClient } from "./support/jwks.js"

const nats = useNatsServer()
const closers: Array<() => Promise<unknown>> = []
afterAll(async () => {
  for (const close of closers.reverse()) await close()
})

describe("an event log nobody answers", () => {
  it("retries a create while no stream answers and stores it once the stream is back", async () => {
    const naming = freshNaming()
    const nc = await nats.connect()
    await provision(nc, naming)
    const client = await CodeqClient.connect({ connection: nc, naming, appendRetryMs: 20_000 })
    closers.push(() => client.close())
    const jsm = await nc.jetstreamManager()
    await jsm.streams.delete(eventsStream(naming))
    const creating = client.producer("acme").create({ command: "later", idempotencyKey: "order-1" })
    await waitFor(() => client.repo.appendRetries > 0, { what: "the create to be sent again" })
    await provision(nc, naming)
    const task = await creating
    const history = await client.log.readTask("acme", task.id)
    expect(history.events.map((e) => e.event.type)).toEqual(["TaskCreated"])
  })

  it("reports unavailable once the retry budget is spent, never stream_not_found", async () => {
    const naming = freshNaming()
    const nc = await nats.connect()
    const client = await CodeqClient.connect({ connection: nc, naming, appendRetryMs: 300 })
    closers.push(() => client.close())
    const error = await client.producer("acme").create({ command: "later" }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(LogError)
    expect(error).toMatchObject({ reason: "unavailable" })
    expect(client.repo.appendRetries).toBeGreaterThan(0)
  })

  it("answers 503 with Retry-After over HTTP, saying the log is unavailable rather than unprovisioned", async () => {
    const naming = freshNaming()
    const client = await CodeqClient.connect({ servers: nats.url(), naming, appendRetryMs: 300 })
    closers.push(() => client.close())
    const http = await startHttpServer({ client, auth: { staticTokens: Object.values(STATIC_TOKENS) }, port: 0, host: "127.0.0.1" })
    closers.push(() => http.close())
    const res = await apiClient(http.url)("POST", "/v1/codeq/tasks", { token: STATIC_TOKENS.acmeProducer.token, body: { command: "later" } })
    expect(res.status).toBe(503)
    expect(res.headers.get("retry-after")).toBe("2")
    expect(String(res.json.error)).toMatch(/event log is unavailable/)
    expect(String(res.json.error)).not.toMatch(/not provisioned$/)
  })
})
