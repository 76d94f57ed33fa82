import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { CodeqClient } from "../src/sdk/client.js"
import { ValidationError } from "../src/tasks/errors.js"
import type { CreateTaskInput } from "../src/tasks/create.js"
import { eventCount, freshNaming, provision, useNatsServer, waitFor } from "./support/harness.js"
import { eventsStream, eventSubjects } from "../streams/definitions.js"

const nats = useNatsServer()

describe("creating tasks", () => {
  const naming = freshNaming()
  let client: CodeqClient

  beforeAll(async () => {
    const nc = await nats.connect()
    await provision(nc, naming)
    client = await CodeqClient.connect({ connection: nc, naming, limits: { maxPayloadBytes: 1024 } })
  })
  afterAll(() => client.close())

  it("gives 50 concurrent creates with one idempotency key one task and 50 identical answers", async () => {
    const producer = client.producer("acme")
    const before = await eventCount(client.nc, naming)
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => producer.create({ command: "resize", payload: { i }, idempotencyKey: "order-42" }))
    )
    expect(new Set(answers.map((a) => a.id)).size).toBe(1)
    for (const answer of answers) expect(answer).toEqual(answers[0])
    expect(await eventCount(client.nc, naming)).toBe(before + 1)
    const history = await client.log.readTask("acme", answers[0]?.id ?? "")
    expect(history.events.map((e) => e.event.type)).toEqual(["TaskCreated"])
    // The key is never stored, only its hash.
    expect(JSON.stringify(history.events[0]?.event)).not.toContain("order-42")
  })

  it("gives the same idempotency key under two tenants two tasks", async () => {
    const a = await client.producer("tenant-a").create({ command: "resize", idempotencyKey: "shared-key" })
    const b = await client.producer("tenant-b").create({ command: "resize", idempotencyKey: "shared-key" })
    expect(a.id).not.toBe(b.id)
    expect(a.tenantId).toBe("tenant-a")
    expect(b.tenantId).toBe("tenant-b")
    expect((await client.log.readTask("tenant-b", b.id)).events).toHaveLength(1)
  })

  it("returns the created task with its defaults and persisted trace context", async () => {
    const task = await client.producer("acme").create({ command: "encode", payload: { file: "a.mp4" }, priority: 7, webhook: "https://example.com/hook", delaySeconds: 60 })
    expect(task).toMatchObject({ command: "encode", payload: { file: "a.mp4" }, priority: 7, status: "PENDING", attempts: 0, maxAttempts: 5, tenantId: "acme", webhook: "https://example.com/hook" })
    expect(task.traceParent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/)
    expect(Date.parse(task.runAt ?? "") - Date.parse(task.createdAt)).toBeGreaterThanOrEqual(59_000)
  })

  const invalid: ReadonlyArray<readonly [string, string, CreateTaskInput, string, string]> = [
    ["an upper-case tenant", "Acme", { command: "resize" }, "tenant", "pattern"],
    ["a tenant with a dot (subject injection)", "acme.evil", { command: "resize" }, "tenant", "pattern"],
    ["a command with a wildcard", "acme", { command: "resize.>" }, "command", "pattern"],
    ["an empty command", "acme", { command: "" }, "command", "pattern"],
    ["priority 10", "acme", { command: "resize", priority: 10 }, "priority", "range"],
    ["a fractional priority", "acme", { command: "resize", priority: 1.5 }, "priority", "range"],
    ["a runAt without time zone", "acme", { command: "resize", runAt: "2026-01-01T00:00:00" }, "runAt", "timestamp"],
    ["a runAt that is not a date", "acme", { command: "resize", runAt: "tomorrow" }, "runAt", "timestamp"],
    ["a webhook that is not a URL", "acme", { command: "resize", webhook: "not a url" }, "webhook", "url"],
    ["a webhook with an ftp scheme", "acme", { command: "resize", webhook: "ftp://example.com/x" }, "webhook", "url"],
    ["a payload over the limit", "acme", { command: "resize", payload: { blob: "x".repeat(2000) } }, "payload", "max_bytes"],
    ["maxAttempts 0", "acme", { command: "resize", maxAttempts: 0 }, "maxAttempts", "range"],
    ["a negative delay", "acme", { command: "resize", delaySeconds: -1 }, "delaySeconds", "range"],
    ["an unknown field", "acme", { command: "resize", colour: "red" } as CreateTaskInput, "colour", "unknown"]
  ]

  it.each(invalid)("refuses %s with a ValidationError naming the field and rule, appending nothing", async (_name, tenant, input, field, rule) => {
    const before = await eventCount(client.nc, naming)
    const error = await client.producer(tenant).create(input).then(
      () => undefined,
      (e: unknown) => e
    )
    expect(error).toBeInstanceOf(ValidationError)
    expect(error).toMatchObject({ _tag: "ValidationError", field, rule })
    expect((error as ValidationError).message).toContain(field)
    expect(await eventCount(client.nc, naming)).toBe(before)
  })

  it("reports invalid items of a batch one by one and creates the valid ones", async () => {
    const results = await client.producer("acme").createMany([{ command: "resize" }, { command: "bad command" }, { command: "encode", priority: 3 }])
    expect(results.map((r) => r.ok)).toEqual([true, false, true])
    const failed = results[1]
    if (failed !== undefined && !failed.ok) expect(failed.error).toMatchObject({ field: "command", rule: "pattern" })
  })

  /**
   * Creates in flight as the server sees them: a watcher on another connection gets a copy of
   * every create as the server reads it, and of every ack the stream sends back (to the
   * producer's inbox), in that order for each create.
   */
  const watchInFlight = async (tenant: string) => {
    const watcher = await nats.connect()
    let published = 0
    let acked = 0
    let most = 0
    const stream = eventsStream(naming)
    watcher.subscribe(eventSubjects(naming, tenant), {
      callback: () => {
        published++
        most = Math.max(most, published - acked)
      }
    })
    watcher.subscribe("_INBOX.>", {
      callback: (_error, msg) => {
        if (msg.data.length === 0) return
        try {
          const ack = JSON.parse(new TextDecoder().decode(msg.data)) as { stream?: string; seq?: number }
          if (ack.stream === stream && typeof ack.seq === "number") acked++
        } catch {
          // a direct get's answer: not an ack
        }
      }
    })
    await watcher.flush()
    return { mostInFlight: () => most, acks: () => acked, published: () => published, flush: () => watcher.flush(), close: () => watcher.close() }
  }

  it.each([
    [undefined, 64],
    [5, 5],
    [1, 1]
  ])("keeps at most maxInFlight=%s creates of a batch in flight (%i) and creates every one", async (maxInFlight, expected) => {
    const tenant = `window-${expected}`
    const watch = await watchInFlight(tenant)
    const inputs = Array.from({ length: 200 }, (_, i) => ({ command: "resize", payload: { i } }))
    const results = await client.producer(tenant).createMany(inputs, maxInFlight === undefined ? {} : { maxInFlight })
    expect(results.every((r) => r.ok)).toBe(true)
    expect(new Set(results.map((r) => (r.ok ? r.task.id : ""))).size).toBe(200)
    await waitFor(
      async () => {
        await watch.flush()
        return watch.acks() === 200
      },
      { timeoutMs: 5_000, what: "the watcher to see every ack" }
    )
    expect(watch.published()).toBe(200)
    // Never past the limit; pipelined (more than one at a time) whenever the limit allows it.
    expect(watch.mostInFlight()).toBeLessThanOrEqual(expected)
    expect(watch.mostInFlight()).toBeGreaterThanOrEqual(Math.min(2, expected))
    // Its `_INBOX.>` subscription would otherwise see every ack of the file's later tests.
    await watch.close()
  })

  it.each([0, 4097, 1.5, Number.NaN])("refuses maxInFlight=%s naming the field, and creates nothing", async (maxInFlight) => {
    const before = await eventCount(client.nc, naming)
    await expect(client.producer("acme").createMany([{ command: "resize" }], { maxInFlight })).rejects.toMatchObject({
      _tag: "ValidationError",
      field: "maxInFlight",
      rule: "range"
    })
    expect(await eventCount(client.nc, naming)).toBe(before)
  })
})
