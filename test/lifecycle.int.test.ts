import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startBroker, type RunningBroker } from "../src/broker.js"
import { CodeqClient, type CodeqClientOptions } from "../src/sdk/client.js"
import { complete, fail, nack } from "../src/sdk/worker.js"
import type { ValidationError } from "../src/tasks/errors.js"
import { isValidTraceparent, parseTraceparent } from "../src/tracing/codec.js"
import { SPANS, TRACERS } from "../src/tracing/conventions.js"
import { brokerConfig, freshNaming, recordSpans, useNatsServer, waitFor } from "./support/harness.js"
import { claimsStream } from "../streams/definitions.js"

const nats = useNatsServer()

/** A broker on a namespace of the describe block's own, and a way to connect clients closed after it. */
const useBroker = () => {
  const naming = freshNaming()
  const clients: Array<CodeqClient> = []
  let broker: RunningBroker | undefined
  beforeAll(async () => {
    broker = await startBroker(brokerConfig(nats.url(), naming))
  })
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.close()))
    await broker?.stop()
  })
  const connect = async (options: Partial<CodeqClientOptions> = {}) => {
    const client = await CodeqClient.connect({ servers: nats.url(), naming, ...options })
    clients.push(client)
    return client
  }
  return { naming, connect }
}

describe("one producer, four workers, 1,000 tasks over three commands", () => {
  const recorder = recordSpans()
  const { connect } = useBroker()

  it("completes every task exactly once, each log Created → Claimed → Completed, traced on one trace per task", async () => {
    const client = () => connect({ tracerProvider: recorder.provider })
    const producerClient = await client()
    const handled = new Map<string, number>()
    const workers = await Promise.all(
      [1, 2, 3, 4].map(async (n) => (await client()).worker("acme", { workerId: `worker-${n}` }))
    )
    const commands = ["resize", "encode", "notify"]
    const runs = workers.map((worker) =>
      worker.run(
        commands,
        (task) => {
          handled.set(task.id, (handled.get(task.id) ?? 0) + 1)
          return { done: task.id }
        },
        { concurrency: 8 }
      )
    )

    const producer = producerClient.producer("acme")
    const inputs = Array.from({ length: 1000 }, (_, i) => ({ command: commands[i % 3] ?? "resize", payload: { i } }))
    const results = await producer.createMany(inputs)
    const ids = results.map((result) => {
      if (!result.ok) throw result.error
      return result.task.id
    })
    expect(new Set(ids).size).toBe(1000)

    await waitFor(() => handled.size === 1000 || undefined, { timeoutMs: 60_000, what: "1,000 handled tasks" })
    const finals = await waitFor(
      async () => {
        const tasks = await Promise.all(ids.map((id) => producer.get(id)))
        return tasks.every((task) => task.status === "COMPLETED") ? tasks : undefined
      },
      { timeoutMs: 30_000, what: "every task COMPLETED" }
    )
    await Promise.all(workers.map((worker) => worker.stop()))
    await Promise.all(runs)

    expect([...handled.values()].every((count) => count === 1)).toBe(true)
    expect(finals.every((task) => (task.result as { done: string }).done === task.id)).toBe(true)

    const spans = recorder.spans()
    const byName = (name: string) => new Map(spans.filter((s) => s.name === name).map((s) => [s.attributes["codeq.task_id"] as string, s]))
    const creates = byName(SPANS.create)
    const claims = byName(SPANS.claim)
    const submits = byName(SPANS.submitResult)

    for (const id of ids) {
      const history = await producerClient.log.readTask("acme", id)
      expect(history.events.map((e) => e.event.type)).toEqual(["TaskCreated", "TaskClaimed", "TaskCompleted"])
      const traces = history.events.map((e) => e.trace)
      for (const trace of traces) expect(isValidTraceparent(trace?.traceparent)).toBe(true)
      const traceIds = new Set(traces.map((trace) => parseTraceparent(trace?.traceparent)?.traceId))
      expect(traceIds.size).toBe(1)

      const create = creates.get(id)
      const claim = claims.get(id)
      const submit = submits.get(id)
      expect(create?.instrumentationScope.name).toBe(TRACERS.scheduler)
      expect(claim?.instrumentationScope.name).toBe(TRACERS.repository)
      expect(submit?.instrumentationScope.name).toBe(TRACERS.results)
      const createId = create?.spanContext().spanId
      expect(claim?.parentSpanContext?.spanId).toBe(createId)
      expect(submit?.parentSpanContext?.spanId).toBe(createId)
      expect(new Set([create, claim, submit].map((s) => s?.spanContext().traceId))).toEqual(traceIds)
      // Each event carries the context of the span that wrote it, its parent and its start.
      expect(parseTraceparent(traces[0]?.traceparent)?.spanId).toBe(createId)
      expect(parseTraceparent(traces[1]?.traceparent)?.spanId).toBe(claim?.spanContext().spanId)
      expect(parseTraceparent(traces[2]?.traceparent)?.spanId).toBe(submit?.spanContext().spanId)
      expect(traces[1]?.parentSpanId).toBe(createId)
      expect(traces[2]?.parentSpanId).toBe(createId)
      expect(traces.every((trace) => /^\d{19}$/.test(trace?.spanStart ?? ""))).toBe(true)
    }
    expect(creates.size).toBe(1000)
    expect(claims.size).toBe(1000)
    expect(submits.size).toBe(1000)
  })
})

describe("a worker's concurrency", () => {
  const { naming, connect } = useBroker()

  it("never runs more handlers at once than its concurrency, and fills every slot", async () => {
    const client = await connect()
    let running = 0
    let most = 0
    let done = 0
    // Handlers wait here; the test lets them all go each time the slots are full.
    let release: () => void = () => undefined
    let gate = new Promise<void>((resolve) => (release = resolve))
    const worker = client.worker("acme", { workerId: "slots" })
    const run = worker.run(
      ["slots"],
      async () => {
        running++
        most = Math.max(most, running)
        await gate
        running--
        done++
      },
      { concurrency: 3 }
    )
    const results = await client.producer("acme").createMany(Array.from({ length: 12 }, (_, i) => ({ command: "slots", payload: { i } })))
    expect(results.every((r) => r.ok)).toBe(true)
    for (let round = 0; round < 4; round++) {
      await waitFor(() => running === 3, { timeoutMs: 10_000, what: `three handlers running (round ${round + 1})` })
      const open = release
      gate = new Promise<void>((resolve) => (release = resolve))
      open()
      await waitFor(() => done === 3 * (round + 1), { timeoutMs: 10_000, what: `round ${round + 1} done` })
    }
    expect(most).toBe(3)
    await worker.stop()
    await run
  })

  it("keeps taking tasks in the free slot while one handler runs long", async () => {
    const client = await connect()
    let longStarted = false
    let releaseLong: () => void = () => undefined
    const long = new Promise<void>((resolve) => (releaseLong = resolve))
    const short: Array<number> = []
    const worker = client.worker("acme", { workerId: "one-long" })
    const run = worker.run(
      ["long", "short"],
      async (task) => {
        if (task.command !== "long") short.push((task.payload as { i: number }).i)
        else {
          longStarted = true
          await long
        }
      },
      { concurrency: 2 }
    )
    const producer = client.producer("acme")
    await producer.create({ command: "long" })
    await waitFor(() => longStarted, { timeoutMs: 10_000, what: "the long handler to start" })
    // Every short task goes through the one free slot while the long handler holds the other.
    const results = await producer.createMany(Array.from({ length: 30 }, (_, i) => ({ command: "short", payload: { i } })))
    expect(results.every((r) => r.ok)).toBe(true)
    await waitFor(() => short.length === 30, { timeoutMs: 20_000, what: "30 short tasks beside the long one" })
    releaseLong()
    await worker.stop()
    await run
  })

  it("leaves a claim that comes beyond its concurrency in the buffer until its slot is free", async () => {
    const client = await connect()
    const jsm = await client.nc.jetstreamManager()
    let releaseFirst: () => void = () => undefined
    const first = new Promise<void>((resolve) => (releaseFirst = resolve))
    let firstStarted = false
    const handled: Array<string> = []
    const worker = client.worker("acme", { workerId: "one-slot" })
    const run = worker.run(
      ["first", "second"],
      async (task) => {
        if (task.command === "first") {
          firstStarted = true
          await first
        }
        handled.push(task.command)
      },
      { concurrency: 1 }
    )
    // An idle worker keeps a one-message long-poll open on each lane, outside its capacity.
    const longPolls = async () => {
      let waiting = 0
      for await (const info of jsm.consumers.list(claimsStream(naming))) if (/^claim-acme-(first|second)-0$/.test(info.name)) waiting += info.num_waiting
      return waiting === 2
    }
    await waitFor(longPolls, { timeoutMs: 10_000, what: "the worker's long-polls" })
    const producer = client.producer("acme")
    const a = await producer.create({ command: "first" })
    await waitFor(() => firstStarted, { timeoutMs: 10_000, what: "the first handler to start" })
    // The second command's lanes keep a one-message long-poll open outside the capacity: its claim
    // reaches the worker while the only slot is taken (the consumer counts it delivered, not yet
    // acked), and a round trip on the worker's connection means the worker has read it.
    const b = await producer.create({ command: "second" })
    const deliveredToWorker = async () => {
      let pending = 0
      for await (const info of jsm.consumers.list(claimsStream(naming))) if (info.name.startsWith("claim-acme-second-")) pending += info.num_ack_pending
      // Handled already means it was not held back: the assertions below say so.
      return pending === 1 || handled.includes("second")
    }
    await waitFor(deliveredToWorker, { timeoutMs: 10_000, what: "the second claim to reach the worker" })
    await client.nc.flush()
    releaseFirst()
    await waitFor(() => handled.length === 2, { timeoutMs: 10_000, what: "both handlers" })
    // Claimed only once the first task had ended: its TaskClaimed follows the first TaskCompleted in the stream.
    const completedFirst = (await client.log.readTask("acme", a.id)).events.find((e) => e.event.type === "TaskCompleted")
    const claimedSecond = (await client.log.readTask("acme", b.id)).events.find((e) => e.event.type === "TaskClaimed")
    expect(handled).toEqual(["first", "second"])
    expect(claimedSecond?.seq).toBeGreaterThan(completedFirst?.seq ?? Number.POSITIVE_INFINITY)
    await worker.stop()
    await run
  })
})

describe("what a handler returns that the log could not store", () => {
  const { connect } = useBroker()

  it("fails a task whose result is over the payload limit or not JSON at once, saying so; cuts an error or a reason too long; takes a nack delay that is not a number as none", async () => {
    const client = await connect()
    const reported: Array<{ error: unknown; taskId: string | undefined }> = []
    const worker = client.worker("acme", { workerId: "bounds-1", onError: (error, taskId) => reported.push({ error, taskId }) })
    const runs = new Map<string, number>()
    const run = worker.run(
      ["big-result", "cyclic-result", "long-error", "long-reason", "nan-delay", "error-object", "artifacts-object"],
      (task, job) => {
        runs.set(task.id, (runs.get(task.id) ?? 0) + 1)
        // 2 MB: over the 256 KiB payload limit, and over the server's 1 MB max_payload too.
        if (task.command === "big-result") return { blob: "x".repeat(2_000_000) }
        if (task.command === "cyclic-result") {
          const cyclic: Record<string, unknown> = {}
          cyclic.self = cyclic
          return cyclic
        }
        if (task.command === "long-error") return fail("e".repeat(10_000))
        // From JavaScript: a delay that is not a number, an Error where the text goes.
        if (task.command === "nan-delay") return job.attempt === 1 ? nack("later", Number.NaN) : "second attempt"
        if (task.command === "error-object") return fail(new Error("boom") as unknown as string)
        if (task.command === "artifacts-object") return complete({ ok: true }, { name: "a.txt" } as unknown as ReadonlyArray<unknown>)
        return job.attempt === 1 ? nack("r".repeat(5_000), 0) : "second attempt"
      },
      { concurrency: 4 }
    )
    const producer = client.producer("acme")
    const big = await producer.create({ command: "big-result" })
    const longError = await producer.create({ command: "long-error" })
    const longReason = await producer.create({ command: "long-reason" })
    const cyclic = await producer.create({ command: "cyclic-result" })
    const nanDelay = await producer.create({ command: "nan-delay" })
    const errorObject = await producer.create({ command: "error-object" })
    const artifactsObject = await producer.create({ command: "artifacts-object" })
    const ended = async (id: string) => ["FAILED", "COMPLETED", "DEAD_LETTERED"].includes((await producer.get(id)).status)
    // Long before the lease (300 s) that a task whose result was never stored would wait out.
    await waitFor(async () => (await ended(big.id)) && (await ended(longError.id)) && (await ended(longReason.id)) && (await ended(cyclic.id)) && (await ended(errorObject.id)) && (await ended(artifactsObject.id)), { timeoutMs: 20_000, what: "the tasks to end" })

    const bigView = await producer.get(big.id)
    expect(bigView).toMatchObject({ status: "FAILED", attempts: 1 })
    expect(bigView.error).toMatch(/^result not stored: result and artifacts together exceed 262144 bytes/)
    expect(bigView.result).toBeUndefined()
    expect(runs.get(big.id)).toBe(1)
    expect(await producer.get(cyclic.id)).toMatchObject({ status: "FAILED", error: "result not stored: result must be JSON-serialisable" })
    const errorView = await producer.get(longError.id)
    expect(errorView.status).toBe("FAILED")
    expect(errorView.error).toBe("e".repeat(4096))
    const nacked = (await client.log.readTask("acme", longReason.id)).events.find((e) => e.event.type === "TaskNacked")
    expect(nacked?.event).toMatchObject({ reason: "r".repeat(1024) })
    expect((await producer.get(longReason.id)).status).toBe("COMPLETED")
    expect(await producer.get(errorObject.id)).toMatchObject({ status: "FAILED", error: "boom" })
    expect(await producer.get(artifactsObject.id)).toMatchObject({ status: "FAILED", error: "result not stored: artifacts must be an array" })
    // NaN would have been stored as null: an event no reader takes, the task stuck behind it.
    // The backoff's delay instead: nacked and readable.
    await waitFor(async () => (await client.log.readTask("acme", nanDelay.id)).events.some((e) => e.event.type === "TaskNacked"), { timeoutMs: 20_000, what: "the nack" })
    const history = await client.log.readTask("acme", nanDelay.id)
    expect(history.undecodable).toEqual([])
    const nackedNan = history.events.find((e) => e.event.type === "TaskNacked")?.event as { delaySeconds?: unknown } | undefined
    expect(typeof nackedNan?.delaySeconds === "number" && Number.isFinite(nackedNan.delaySeconds)).toBe(true)

    const issues = reported.map(({ error, taskId }) => ({ taskId, name: (error as Error).name, field: (error as ValidationError).field, rule: (error as ValidationError).rule }))
    expect(issues).toEqual(
      expect.arrayContaining([
        { taskId: big.id, name: "ValidationError", field: "result", rule: "max_bytes" },
        { taskId: cyclic.id, name: "ValidationError", field: "result", rule: "json" },
        { taskId: longError.id, name: "ValidationError", field: "error", rule: "length" },
        { taskId: longReason.id, name: "ValidationError", field: "reason", rule: "length" },
        { taskId: nanDelay.id, name: "ValidationError", field: "delaySeconds", rule: "range" },
        { taskId: errorObject.id, name: "ValidationError", field: "error", rule: "type" },
        { taskId: artifactsObject.id, name: "ValidationError", field: "artifacts", rule: "type" }
      ])
    )
    expect(issues).toHaveLength(7)
    await worker.stop()
    await run
  })
})
