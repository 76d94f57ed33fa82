import { describe, expect, it } from "vitest"
import { randomUUID } from "node:crypto"
import { headers } from "nats"
import { EVENT_SCHEMA_VERSION, type TaskEvent } from "../src/domain/events.js"
import { ConcurrencyConflict, LogError } from "../src/eventlog/errors.js"
import { JetStreamEventLog } from "../src/eventlog/jetstream.js"
import { freshNaming, provision, useNatsServer } from "./support/harness.js"

const nats = useNatsServer()
const trace = { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tracestate: undefined, parentSpanId: undefined, spanStart: "1764111111000000000" }

const created = (taskId: string): TaskEvent => ({
  v: EVENT_SCHEMA_VERSION,
  type: "TaskCreated",
  taskId,
  tenant: "acme",
  at: new Date().toISOString(),
  command: "resize",
  payload: null,
  priority: 0,
  maxAttempts: 5
})

describe("the JetStream event log", () => {
  it("lets exactly one of 20 appends racing on one expected sequence win; the others get ConcurrencyConflict", async () => {
    const naming = freshNaming()
    const nc = await nats.connect()
    await provision(nc, naming)
    const log = JetStreamEventLog.connect(nc, naming)
    const taskId = randomUUID()
    expect((await log.append({ tenant: "acme", taskId, event: created(taskId), trace, expectedSeq: 0 })).ok).toBe(true)
    const version = (await log.readTask("acme", taskId)).version
    const heartbeat = (n: number): TaskEvent => ({ v: 1, type: "TaskHeartbeat", taskId, tenant: "acme", at: new Date().toISOString(), workerId: `w${n}`, leaseUntil: new Date().toISOString() })
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, n) => log.append({ tenant: "acme", taskId, event: heartbeat(n), trace, expectedSeq: version }))
    )
    const winners = results.filter((r) => r.ok)
    const losers = results.flatMap((r) => (r.ok ? [] : [r.error]))
    expect(winners).toHaveLength(1)
    expect(losers).toHaveLength(19)
    for (const error of losers) {
      expect(error).toBeInstanceOf(ConcurrencyConflict)
      expect(error).toMatchObject({ _tag: "ConcurrencyConflict", expectedSeq: version })
    }
    const history = await log.readTask("acme", taskId)
    expect(history.events.map((e) => e.event.type)).toEqual(["TaskCreated", "TaskHeartbeat"])
    log.close()
  })

  it("reads a task's history in log order with each event's trace headers", async () => {
    const naming = freshNaming()
    const nc = await nats.connect()
    await provision(nc, naming)
    const log = JetStreamEventLog.connect(nc, naming)
    const taskId = randomUUID()
    const other = randomUUID()
    let seq = 0
    for (const id of [taskId, other, taskId]) {
      const history = await log.readTask("acme", id)
      const event: TaskEvent = history.version === 0 ? created(id) : { v: 1, type: "TaskCancelled", taskId: id, tenant: "acme", at: new Date().toISOString(), reason: "test" }
      const result = await log.append({ tenant: "acme", taskId: id, event, trace: { ...trace, parentSpanId: "b7ad6b7169203331" }, expectedSeq: history.version })
      expect(result.ok).toBe(true)
      if (result.ok) expect(result.seq).toBeGreaterThan(seq)
      if (result.ok) seq = result.seq
    }
    const history = await log.readTask("acme", taskId)
    expect(history.events.map((e) => [e.seq, e.event.type])).toEqual([[1, "TaskCreated"], [3, "TaskCancelled"]])
    expect(history.version).toBe(3)
    expect(history.events[1]?.trace).toEqual({ ...trace, parentSpanId: "b7ad6b7169203331" })
    log.close()
  })

  it("reports a garbage message on a task subject as undecodable and still counts its sequence", async () => {
    const naming = freshNaming()
    const nc = await nats.connect()
    await provision(nc, naming)
    const log = JetStreamEventLog.connect(nc, naming)
    const taskId = randomUUID()
    await log.append({ tenant: "acme", taskId, event: created(taskId), trace, expectedSeq: 0 })
    await nc.jetstream().publish(`${naming.subjectRoot}.evt.acme.${taskId}`, new TextEncoder().encode("{not json"))
    const history = await log.readTask("acme", taskId)
    expect(history.events).toHaveLength(1)
    expect(history.undecodable).toEqual([{ seq: 2, reason: "body is not JSON" }])
    expect(history.version).toBe(2)
    log.close()
  })

  it("reports a publish nobody answers as unavailable (retryable), and a missing ack as a timeout", async () => {
    const nc = await nats.connect()
    const log = JetStreamEventLog.connect(nc, freshNaming(), { ackTimeoutMs: 300 })
    const missing = await log.publisher.publish("nowhere.at.all", new Uint8Array(), headers())
    expect(missing.ok).toBe(false)
    if (!missing.ok) expect(missing.error).toMatchObject({ _tag: "LogError", reason: "unavailable" })
    // A plain subscriber that never answers: the ack never comes.
    const silent = nc.subscribe("silent.subject")
    const timedOut = await log.publisher.publish("silent.subject", new Uint8Array(), headers())
    expect(timedOut.ok).toBe(false)
    if (!timedOut.ok) {
      expect(timedOut.error).toBeInstanceOf(LogError)
      expect(timedOut.error).toMatchObject({ reason: "timeout" })
    }
    silent.unsubscribe()
    log.close()
  })
})
