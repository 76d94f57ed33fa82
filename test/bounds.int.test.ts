/**
 * Bounds on what producers and workers send (issue 9): a far-future runAt, a nak delay beyond what
 * the server accepts, claims naming many commands, and the claim sources they hold; and sizes: what
 * a worker returns or sends, and an event over the server's max_payload.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import { AckPolicy, connect, headers, type NatsConnection } from "nats"
import { startNatsServer, freePort, type NatsServerHandle } from "../src/testing/natsServer.js"
import { CodeqClient } from "../src/sdk/client.js"
import { answerDelivery } from "../src/eventlog/acks.js"
import { ClaimCapacity, ValidationError } from "../src/tasks/errors.js"
import { LogError } from "../src/eventlog/errors.js"
import { ClaimSource } from "../src/eventlog/claims/source.js"
import { LaneWatch } from "../src/eventlog/claims/laneWatch.js"
import { claimSubject, claimsStream } from "../streams/definitions.js"
import { brokerConfig, freshNaming, provision, waitFor } from "./support/harness.js"
import { startBroker } from "../src/broker.js"
import { createLogger } from "../src/log/log.js"

let server: NatsServerHandle
let monitor = 0
const connections: Array<NatsConnection> = []

beforeAll(async () => {
  monitor = await freePort()
  // Monitoring on, to read the subscriptions a connection holds from the server itself.
  server = await startNatsServer({ ownServer: true, args: ["-m", String(monitor)] })
})
afterAll(async () => {
  await Promise.allSettled(connections.map((nc) => nc.close()))
  await server.stop()
})

const open = async (name: string) => {
  const nc = await connect({ servers: server.url, name, noAsyncTraces: true })
  connections.push(nc)
  return nc
}

/** A broker, a client on the connection `name`, and a task of command "held" claimed by worker "w". */
const heldTask = async (name: string) => {
  const naming = freshNaming()
  const nc = await open(name)
  await provision(nc, naming)
  const broker = await startBroker(brokerConfig(server.url, naming))
  const client = await CodeqClient.connect({ connection: nc, naming })
  const task = await client.producer("acme").create({ command: "held" })
  const claimed = await client.tasks.claim("acme", ["held"], { workerId: "w", waitSeconds: 5 })
  expect(claimed?.task.id).toBe(task.id)
  return { broker, client, task, lease: { workerId: "w" } }
}

/** Subscriptions the server holds for the connection named `name`. */
const serverSubscriptions = async (name: string): Promise<number> => {
  const res = await fetch(`http://127.0.0.1:${monitor}/connz?subs=1`)
  const body = (await res.json()) as { connections: Array<{ name?: string; subscriptions: number }> }
  const conn = body.connections.find((c) => c.name === name)
  if (conn === undefined) throw new Error(`no connection named ${name}`)
  return conn.subscriptions
}

const FAR_FUTURE = "9999-12-31T00:00:00Z"

describe("far-future times", () => {
  it("refuses a runAt beyond the longest delay, naming the field and rule, and stores nothing", async () => {
    const naming = freshNaming()
    const nc = await open("bounds-runat")
    await provision(nc, naming)
    const client = await CodeqClient.connect({ connection: nc, naming })
    const refused = await client.producer("acme").create({ command: "later", runAt: FAR_FUTURE }).catch((error: unknown) => error)
    expect(refused).toBeInstanceOf(ValidationError)
    expect(refused).toMatchObject({ field: "runAt", rule: "range" })
    const fine = await client.producer("acme").create({ command: "later", runAt: new Date(Date.now() + 300 * 86_400_000).toISOString() })
    expect(fine.status).toBe("PENDING")
    await client.close()
  })

  it("refuses a heartbeat or a nak whose number is null, naming the field, and changes nothing", async () => {
    const { broker, client, task, lease } = await heldTask("bounds-null")
    const hostile = null as unknown as number
    await expect(client.tasks.heartbeat("acme", task.id, lease, hostile)).rejects.toMatchObject({ name: "ValidationError", field: "extendSeconds" })
    await expect(client.tasks.settleLease("acme", task.id, lease, { type: "nack", reason: "x", delaySeconds: hostile })).rejects.toMatchObject({ name: "ValidationError", field: "delaySeconds" })
    expect((await client.log.readTask("acme", task.id)).events.map((e) => e.event.type)).toEqual(["TaskCreated", "TaskClaimed"])
    // Absent, the extension is the default lease.
    expect((await client.tasks.heartbeat("acme", task.id, lease)).status).toBe("IN_PROGRESS")
    await client.close()
    await broker.stop()
  })

  it("keeps a message whose nak asks for the year 9999 away, instead of the server redelivering it at once", async () => {
    const naming = freshNaming()
    const nc = await open("bounds-nak")
    await provision(nc, naming)
    const stream = claimsStream(naming)
    const subject = claimSubject(naming, "acme", "later", 0)
    await nc.jetstream().publish(subject, new TextEncoder().encode("{}"), { headers: headers() })
    const jsm = await nc.jetstreamManager()
    await jsm.consumers.add(stream, { durable_name: "far", filter_subject: subject, ack_policy: AckPolicy.Explicit })
    const first = await nc.request(`$JS.API.CONSUMER.MSG.NEXT.${stream}.far`, new TextEncoder().encode(JSON.stringify({ batch: 1 })), { timeout: 2_000, noMux: true })
    if (first.reply === undefined) throw new Error("the message was not delivered")
    // A nak delay in nanoseconds past int64 is refused by the server, which then redelivers at once.
    answerDelivery(nc, first.reply, { nakDelayMs: Date.parse(FAR_FUTURE) - Date.now() })
    const again = await (await nc.jetstream().consumers.get(stream, "far")).next({ expires: 1_500 })
    expect(again).toBeNull()
    const info = await jsm.consumers.info(stream, "far")
    expect(info.num_redelivered).toBe(0)
  })

  it("schedules a claim hint for a far-future task without a timer overflow", async () => {
    const nc = await open("bounds-hint")
    const naming = freshNaming()
    const warnings: Array<string> = []
    const onWarning = (warning: Error) => warnings.push(warning.name)
    process.on("warning", onWarning)
    const lanes = new LaneWatch(nc, naming)
    const source = new ClaimSource(nc, naming, "acme", ["later"], lanes)
    try {
      source.hint("later", 0, new Date(FAR_FUTURE))
      // Node emits TimeoutOverflowWarning on the next tick after the setTimeout call.
      await new Promise((resolve) => setImmediate(resolve))
      await new Promise((resolve) => setImmediate(resolve))
      expect(warnings).not.toContain("TimeoutOverflowWarning")
    } finally {
      process.off("warning", onWarning)
      source.close()
      lanes.close()
    }
  })
})

const gc = (): void => {
  setFlagsFromString("--expose-gc")
  ;(runInNewContext("gc") as () => void)()
}

describe("claims naming many commands", () => {
  it("refuses more than 100 commands in one claim or one worker, with the field and rule", async () => {
    const naming = freshNaming()
    const nc = await open("bounds-commands")
    await provision(nc, naming)
    const client = await CodeqClient.connect({ connection: nc, naming })
    const commands = Array.from({ length: 101 }, (_, i) => `c${i}`)
    const refused = await client.tasks.claim("acme", commands, { workerId: "w" }).catch((error: unknown) => error)
    expect(refused).toBeInstanceOf(ValidationError)
    expect(refused).toMatchObject({ field: "commands", rule: "max_items" })
    expect(() => client.worker("acme").run(commands, () => null)).toThrow(/at most 100 commands/)
    await client.close()
  })

  it("holds one subscription per tenant whatever the commands, and releases what idle claim sources held", async () => {
    const naming = freshNaming()
    const name = "bounds-burst"
    const nc = await open(name)
    await provision(nc, naming)
    const client = await CodeqClient.connect({ connection: nc, naming, claimSources: { sourceIdleMs: 400, maxSourcesPerTenant: 64 } })
    const baseline = await serverSubscriptions(name)
    gc()
    const heapBefore = process.memoryUsage().heapUsed
    // 200 claims of 100 distinct commands each: 20,000 commands, once one subscription per command.
    let peakSources = 0
    let peakSubs = 0
    for (let round = 0; round < 200; round++) {
      const commands = Array.from({ length: 100 }, (_, i) => `r${round}-c${i}`)
      expect(await client.tasks.claim("acme", commands, { workerId: "w" })).toBeUndefined()
      peakSources = Math.max(peakSources, client.tasks.claimSources)
      if (round % 50 === 49) peakSubs = Math.max(peakSubs, await serverSubscriptions(name))
    }
    expect(peakSources).toBeLessThanOrEqual(64)
    expect(peakSubs).toBeLessThanOrEqual(baseline + 1)
    await waitFor(() => client.tasks.claimSources === 0, { what: "idle claim sources to be released" })
    await waitFor(async () => (await serverSubscriptions(name)) === baseline, { what: "the lane subscription to be dropped" })
    gc()
    const grownMb = (process.memoryUsage().heapUsed - heapBefore) / 1e6
    console.log(`heap after the burst and release: ${grownMb.toFixed(1)} MB above the start`)
    expect(grownMb).toBeLessThan(10)
    await client.close()
  })

  it("refuses a new set of commands with ClaimCapacity when every claim source of the tenant is long-polling", async () => {
    const naming = freshNaming()
    const nc = await open("bounds-capacity")
    await provision(nc, naming)
    const client = await CodeqClient.connect({ connection: nc, naming, claimSources: { maxSourcesPerTenant: 3 } })
    const abort = new AbortController()
    const polls = [0, 1, 2].map((i) => client.tasks.claim("acme", [`busy${i}`], { workerId: "w", waitSeconds: 30 }, abort.signal))
    await waitFor(() => client.tasks.claimSources === 3, { what: "three long-polls" })
    const refused = await client.tasks.claim("acme", ["one-more"], { workerId: "w" }).catch((error: unknown) => error)
    expect(refused).toBeInstanceOf(ClaimCapacity)
    // Another tenant has its own allowance; the same set of commands reuses its source.
    expect(await client.tasks.claim("globex", ["one-more"], { workerId: "w" })).toBeUndefined()
    abort.abort()
    expect(await Promise.all(polls)).toEqual([undefined, undefined, undefined])
    // Once they are idle, a new set evicts the least recently used one.
    expect(await client.tasks.claim("acme", ["one-more"], { workerId: "w" })).toBeUndefined()
    await client.close()
  })
})

describe("sizes", () => {
  it("refuses over the SDK what the HTTP API refuses: a result over the payload limit, a reason or error too long; and changes nothing", async () => {
    const { broker, client, task, lease } = await heldTask("bounds-sizes")
    const refusals = [
      [client.tasks.settleLease("acme", task.id, lease, { type: "complete", result: "x".repeat(300 * 1024) }), { field: "result", rule: "max_bytes" }],
      [client.tasks.settleLease("acme", task.id, lease, { type: "fail", error: "x".repeat(4097) }), { field: "error", rule: "length" }],
      [client.tasks.settleLease("acme", task.id, lease, { type: "nack", reason: "x".repeat(1025) }), { field: "reason", rule: "length" }],
      [client.tasks.cancel("acme", task.id, "x".repeat(1025)), { field: "reason", rule: "length" }]
    ] as const
    for (const [call, issue] of refusals) await expect(call).rejects.toMatchObject({ name: "ValidationError", ...issue })
    expect((await client.log.readTask("acme", task.id)).events.map((e) => e.event.type)).toEqual(["TaskCreated", "TaskClaimed"])
    // At the limits, each is taken.
    await client.tasks.settleLease("acme", task.id, lease, { type: "fail", error: "x".repeat(4096) })
    expect((await client.producer("acme").get(task.id)).status).toBe("FAILED")
    await client.close()
    await broker.stop()
  })

  it("reports an event over the server's max_payload as refused, naming the limit, not as a closed connection; a broker there warns at start", async () => {
    // A server whose operator lowered max_payload below what codeq's 256 KiB payload limit needs.
    const dir = mkdtempSync(join(tmpdir(), "codeq-maxpayload-"))
    const config = join(dir, "server.conf")
    writeFileSync(config, "max_payload: 65536\n")
    const small = await startNatsServer({ ownServer: true, args: ["-c", config] })
    try {
      const naming = freshNaming()
      const nc = await connect({ servers: small.url, noAsyncTraces: true })
      await provision(nc, naming)
      const client = await CodeqClient.connect({ connection: nc, naming, closeConnection: true })
      const refused = await client.producer("acme").create({ command: "big", payload: "x".repeat(100_000) }).catch((error: unknown) => error)
      expect(refused).toBeInstanceOf(LogError)
      expect(refused).toMatchObject({ reason: "rejected" })
      expect((refused as LogError).detail).toMatch(/over the server's max_payload \(65536 bytes\)/)
      // The connection is fine: a smaller create goes through.
      expect((await client.producer("acme").create({ command: "big", payload: "x".repeat(1_000) })).status).toBe("PENDING")
      // A broker on that server says at start what it cannot do there.
      const lines: Array<Record<string, unknown>> = []
      const logger = createLogger({ level: "warn", destination: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) } })
      const broker = await startBroker(brokerConfig(small.url, naming), { logger })
      const warning = lines.find((line) => typeof line.msg === "string" && line.msg.startsWith("the nats-server's max_payload is 65536 bytes"))
      expect(warning).toMatchObject({ level: "warn", max_payload: 65536, needed: 2 * 256 * 1024 + 32 * 1024 })
      // Each event fits, the task's document (payload and result) does not: said, not silently missing.
      const big = await client.producer("acme").create({ command: "doc", payload: "p".repeat(40_000) })
      const claimed = await client.tasks.claim("acme", ["doc"], { workerId: "w", waitSeconds: 5 })
      expect(claimed?.task.id).toBe(big.id)
      await client.tasks.settleLease("acme", big.id, { workerId: "w" }, { type: "complete", result: "r".repeat(40_000) })
      await waitFor(() => lines.some((line) => line.key === `acme.${big.id}` && typeof line.msg === "string" && line.msg.startsWith("task document not written")), { timeoutMs: 10_000, what: "the refused document to be logged" })
      expect(lines.find((line) => line.key === `acme.${big.id}`)).toMatchObject({ level: "warn", max_payload: 65536 })
      await broker.stop()
      await client.close()
    } finally {
      await small.stop()
    }
  })
})
