/**
 * The EventLog contract, as one suite every adapter runs: what the port promises (src/eventlog/
 * EventLog.ts) and what callers rely on beyond its words — one sequence across all tasks, an
 * append checked against its subject's last sequence, conflicts that name the sequence found,
 * trace headers read back as written, reads from a sequence on, empty histories for unknown tasks.
 * test/eventlog-contract.int.test.ts runs it on JetStream, test/eventlog-contract.unit.test.ts in
 * memory.
 */
import { afterEach, describe, expect, it } from "vitest"
import { randomUUID } from "node:crypto"
import { eventSubject, type Naming } from "../../streams/definitions.js"
import { EVENT_SCHEMA_VERSION, type EventTrace, type TaskEvent } from "../../src/domain/events.js"
import type { AppendResult, EventLog } from "../../src/eventlog/EventLog.js"
import { ConcurrencyConflict, LogError } from "../../src/eventlog/errors.js"

/** A fresh, empty log of its own and what the suite needs around it. */
export interface EventLogFixture {
  readonly log: EventLog
  readonly naming: Naming
  /** Stores bytes on a subject as a publisher outside the port would: no expected sequence. */
  readonly publishRaw: (subject: string, data: Uint8Array, headers?: Readonly<Record<string, string>>) => Promise<void>
  /** Closes the log (not what it runs on): later calls report it closed. */
  readonly close: () => void
}

export interface EventLogContractOptions<F extends EventLogFixture> {
  /** Called once per test. */
  readonly make: () => Promise<F>
  /** Called after each test with what `make` gave it. */
  readonly teardown?: (fixture: F) => Promise<void>
}

const TRACE: EventTrace = {
  traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
  tracestate: "vendor=opaque,other=1",
  parentSpanId: "53995c3f42cd8ad8",
  spanStart: "1764111111000000000",
  baggage: "tier=gold"
}

const at = () => new Date().toISOString()

const created = (tenant: string, taskId: string): TaskEvent => ({
  v: EVENT_SCHEMA_VERSION,
  type: "TaskCreated",
  taskId,
  tenant,
  at: at(),
  command: "resize",
  payload: { width: 640 },
  priority: 3,
  maxAttempts: 5
})

const heartbeat = (tenant: string, taskId: string, workerId: string): TaskEvent => ({
  v: EVENT_SCHEMA_VERSION,
  type: "TaskHeartbeat",
  taskId,
  tenant,
  at: at(),
  workerId,
  leaseUntil: at()
})

const seqOf = (result: AppendResult): number => {
  if (!result.ok) throw result.error
  return result.seq
}

export const eventLogContract = <F extends EventLogFixture>(adapter: string, options: EventLogContractOptions<F>): void => {
  describe(`${adapter} keeps the EventLog contract`, () => {
    const fixtures: Array<F> = []
    const fresh = async () => {
      const fixture = await options.make()
      fixtures.push(fixture)
      return fixture
    }
    afterEach(async () => {
      for (const fixture of fixtures.splice(0)) await options.teardown?.(fixture)
    })

    /** Appends `event` after whatever the task holds; the sequence it was stored at. */
    const appendNext = async (log: EventLog, event: TaskEvent, trace: EventTrace = TRACE) => {
      const { version } = await log.readTask(event.tenant, event.taskId)
      return seqOf(await log.append({ tenant: event.tenant, taskId: event.taskId, event, trace, expectedSeq: version }))
    }

    it("stores an append and reads it back with its subject, sequence, previous sequence and trace headers", async () => {
      const { log, naming } = await fresh()
      const taskId = randomUUID()
      const event = created("acme", taskId)
      const before = Date.now()
      const result = await log.append({ tenant: "acme", taskId, event, trace: TRACE, expectedSeq: 0 })
      expect(result).toMatchObject({ ok: true, seq: 1, duplicate: false })
      const history = await log.readTask("acme", taskId)
      expect(history.version).toBe(1)
      expect(history.undecodable).toEqual([])
      expect(history.events).toHaveLength(1)
      const [stored] = history.events
      expect(stored).toMatchObject({ seq: 1, subject: eventSubject(naming, "acme", taskId), event, trace: TRACE, prevSeq: 0 })
      // Clocks of one machine: the log's timestamp is the append's moment, give or take a second.
      expect(Math.abs((stored?.time.getTime() ?? 0) - before)).toBeLessThan(1_000)
    })

    it("reads trace fields an append left out as absent, never as empty strings", async () => {
      const { log } = await fresh()
      const taskId = randomUUID()
      const bare: EventTrace = { traceparent: TRACE.traceparent, tracestate: undefined, parentSpanId: undefined, spanStart: undefined }
      seqOf(await log.append({ tenant: "acme", taskId, event: created("acme", taskId), trace: bare, expectedSeq: 0 }))
      const [stored] = (await log.readTask("acme", taskId)).events
      expect(stored?.trace).toEqual(bare)
      expect(stored?.trace).not.toHaveProperty("baggage")
    })

    it("numbers appends with one sequence across all tasks, one up per stored event, and keeps each task's order", async () => {
      const { log } = await fresh()
      const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()]
      const seqs = []
      for (const id of [a, b, a, c, a]) seqs.push(await appendNext(log, (await log.readTask("acme", id)).version === 0 ? created("acme", id) : heartbeat("acme", id, "w1")))
      expect(seqs).toEqual([1, 2, 3, 4, 5])
      const history = await log.readTask("acme", a)
      expect(history.events.map((e) => [e.seq, e.prevSeq, e.event.type])).toEqual([
        [1, 0, "TaskCreated"],
        [3, 1, "TaskHeartbeat"],
        [5, 3, "TaskHeartbeat"]
      ])
      expect(history.version).toBe(5)
    })

    it("lets exactly one of 20 appends racing on one expected sequence win; the others get ConcurrencyConflict naming the winner's sequence", async () => {
      const { log, naming } = await fresh()
      const taskId = randomUUID()
      await appendNext(log, created("acme", taskId))
      const version = (await log.readTask("acme", taskId)).version
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, n) => log.append({ tenant: "acme", taskId, event: heartbeat("acme", taskId, `w${n}`), trace: TRACE, expectedSeq: version }))
      )
      const winners = results.flatMap((r) => (r.ok ? [r] : []))
      const losers = results.flatMap((r) => (r.ok ? [] : [r.error]))
      expect(winners).toHaveLength(1)
      expect(losers).toHaveLength(19)
      const winner = winners[0]?.seq
      for (const error of losers) {
        expect(error).toBeInstanceOf(ConcurrencyConflict)
        expect(error).toMatchObject({ _tag: "ConcurrencyConflict", subject: eventSubject(naming, "acme", taskId), expectedSeq: version, actualSeq: winner })
      }
      const history = await log.readTask("acme", taskId)
      expect(history.events.map((e) => e.event.type)).toEqual(["TaskCreated", "TaskHeartbeat"])
      // A refused append takes no sequence: the next one stored follows the winner.
      expect(await appendNext(log, heartbeat("acme", taskId, "w1"))).toBe((winner ?? 0) + 1)
    })

    it("refuses a create on a task that has events, and an append expecting a sequence the task has not reached, storing nothing", async () => {
      const { log, naming } = await fresh()
      const taskId = randomUUID()
      const subject = eventSubject(naming, "acme", taskId)
      const ahead = await log.append({ tenant: "acme", taskId, event: created("acme", taskId), trace: TRACE, expectedSeq: 5 })
      expect(ahead).toMatchObject({ ok: false, error: { _tag: "ConcurrencyConflict", subject, expectedSeq: 5, actualSeq: 0 } })
      expect(await log.readTask("acme", taskId)).toEqual({ events: [], version: 0, undecodable: [] })
      const first = seqOf(await log.append({ tenant: "acme", taskId, event: created("acme", taskId), trace: TRACE, expectedSeq: 0 }))
      const again = await log.append({ tenant: "acme", taskId, event: created("acme", taskId), trace: TRACE, expectedSeq: 0 })
      expect(again.ok).toBe(false)
      if (!again.ok) {
        expect(again.error).toBeInstanceOf(ConcurrencyConflict)
        expect(again.error).toMatchObject({ subject, expectedSeq: 0, actualSeq: first })
        expect(again.error.message).toBe(`wrong last sequence on ${subject}: expected 0, found ${first}`)
      }
      expect((await log.readTask("acme", taskId)).events).toHaveLength(1)
    })

    it("reads a task that does not exist as an empty history at version 0, not an error", async () => {
      const { log } = await fresh()
      await appendNext(log, created("acme", randomUUID()))
      expect(await log.readTask("acme", randomUUID())).toEqual({ events: [], version: 0, undecodable: [] })
      expect(await log.readTask("nobody", randomUUID(), 1)).toEqual({ events: [], version: 0, undecodable: [] })
    })

    it("reads a window of a task's history from a sequence on, in log order, its version the window's last sequence", async () => {
      const { log } = await fresh()
      const [taskId, other] = [randomUUID(), randomUUID()]
      const seqs: Array<number> = []
      seqs.push(await appendNext(log, created("acme", taskId)))
      await appendNext(log, created("acme", other))
      for (const n of [1, 2, 3]) {
        seqs.push(await appendNext(log, heartbeat("acme", taskId, `w${n}`)))
        await appendNext(log, heartbeat("acme", other, `w${n}`))
      }
      const whole = await log.readTask("acme", taskId)
      expect(whole.events.map((e) => e.seq)).toEqual(seqs)
      expect(await log.readTask("acme", taskId, 0)).toEqual(await log.readTask("acme", taskId, 1))
      // From a sequence held by another task: the window starts at this task's next event.
      const window = await log.readTask("acme", taskId, (seqs[1] ?? 0) + 1)
      expect(window.events.map((e) => e.seq)).toEqual(seqs.slice(2))
      expect(window.events.map((e) => e.event.type === "TaskHeartbeat" && e.event.workerId)).toEqual(["w2", "w3"])
      expect(window.version).toBe(seqs.at(-1))
      expect(await log.readTask("acme", taskId, seqs.at(-1))).toMatchObject({ version: seqs.at(-1), events: [{ seq: seqs.at(-1) }] })
      // Past the task's last event: an empty window, whose version is 0 (not the task's last).
      expect(await log.readTask("acme", taskId, (seqs.at(-1) ?? 0) + 1)).toEqual({ events: [], version: 0, undecodable: [] })
    })

    it("rejects a read from a negative or fractional sequence with LogError read_failed", async () => {
      const { log } = await fresh()
      const taskId = randomUUID()
      await appendNext(log, created("acme", taskId))
      for (const from of [-1, 1.5]) {
        const error = await log.readTask("acme", taskId, from).then(() => undefined, (e: unknown) => e)
        expect(error).toBeInstanceOf(LogError)
        expect(error).toMatchObject({ _tag: "LogError", reason: "read_failed" })
      }
    })

    it("keeps tenants apart: one task id under two tenants is two subjects, each checked against its own last sequence", async () => {
      const { log, naming } = await fresh()
      const taskId = randomUUID()
      const acme = seqOf(await log.append({ tenant: "acme", taskId, event: created("acme", taskId), trace: TRACE, expectedSeq: 0 }))
      const globex = seqOf(await log.append({ tenant: "globex", taskId, event: created("globex", taskId), trace: TRACE, expectedSeq: 0 }))
      expect(globex).toBe(acme + 1)
      // A write decided on the other tenant's version is refused.
      const crossed = await log.append({ tenant: "acme", taskId, event: heartbeat("acme", taskId, "w"), trace: TRACE, expectedSeq: globex })
      expect(crossed).toMatchObject({ ok: false, error: { _tag: "ConcurrencyConflict", subject: eventSubject(naming, "acme", taskId), actualSeq: acme } })
      const [a, g] = [await log.readTask("acme", taskId), await log.readTask("globex", taskId)]
      expect(a.events.map((e) => [e.seq, e.subject, e.event.tenant])).toEqual([[acme, eventSubject(naming, "acme", taskId), "acme"]])
      expect(g.events.map((e) => [e.seq, e.subject, e.event.tenant])).toEqual([[globex, eventSubject(naming, "globex", taskId), "globex"]])
      expect([a.version, g.version]).toEqual([acme, globex])
    })

    it("keeps tasks apart whose ids share a prefix", async () => {
      const { log } = await fresh()
      const taskId = randomUUID()
      await appendNext(log, created("acme", taskId))
      await appendNext(log, created("acme", `${taskId}0`))
      await appendNext(log, created("acme", `${taskId}-x`))
      expect((await log.readTask("acme", taskId)).events.map((e) => e.event.taskId)).toEqual([taskId])
    })

    it("reports a message on a task subject that does not decode as undecodable, still counting its sequence", async () => {
      const { log, naming, publishRaw } = await fresh()
      const taskId = randomUUID()
      const subject = eventSubject(naming, "acme", taskId)
      await appendNext(log, created("acme", taskId))
      await publishRaw(subject, new TextEncoder().encode("{not json"))
      await publishRaw(subject, new TextEncoder().encode(JSON.stringify(heartbeat("acme", taskId, "w"))), { "Codeq-Event": "TaskCompleted" })
      const history = await log.readTask("acme", taskId)
      expect(history.events.map((e) => e.seq)).toEqual([1])
      expect(history.undecodable).toEqual([
        { seq: 2, reason: "body is not JSON" },
        { seq: 3, reason: "Codeq-Event header says TaskCompleted but the body is TaskHeartbeat" }
      ])
      expect(history.version).toBe(3)
      // The next append must expect the undecodable message's sequence.
      const stale = await log.append({ tenant: "acme", taskId, event: heartbeat("acme", taskId, "w"), trace: TRACE, expectedSeq: 1 })
      expect(stale).toMatchObject({ ok: false, error: { _tag: "ConcurrencyConflict", actualSeq: 3 } })
      expect(await log.append({ tenant: "acme", taskId, event: heartbeat("acme", taskId, "w"), trace: TRACE, expectedSeq: 3 })).toMatchObject({ ok: true, seq: 4 })
    })

    it("reads an event stored without headers with no trace and no previous sequence", async () => {
      const { log, naming, publishRaw } = await fresh()
      const taskId = randomUUID()
      const event = created("acme", taskId)
      await publishRaw(eventSubject(naming, "acme", taskId), new TextEncoder().encode(JSON.stringify(event)))
      const [stored] = (await log.readTask("acme", taskId)).events
      expect(stored).toMatchObject({ seq: 1, event, trace: undefined })
      expect(stored?.prevSeq).toBeUndefined()
    })

    it("once closed, resolves appends to LogError closed and rejects reads with LogError read_failed", async () => {
      const { log, close } = await fresh()
      const taskId = randomUUID()
      const version = await appendNext(log, created("acme", taskId))
      close()
      const result = await log.append({ tenant: "acme", taskId, event: heartbeat("acme", taskId, "w"), trace: TRACE, expectedSeq: version })
      expect(result).toMatchObject({ ok: false, error: { _tag: "LogError", reason: "closed" } })
      const error = await log.readTask("acme", taskId).then(() => undefined, (e: unknown) => e)
      expect(error).toBeInstanceOf(LogError)
      expect(error).toMatchObject({ reason: "read_failed" })
    })
  })
}
