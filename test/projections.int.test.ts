import { describe, expect, it } from "vitest"
import type { KV } from "nats"
import { startBroker } from "../src/broker.js"
import { CodeqClient } from "../src/sdk/client.js"
import { startHttpServer } from "../src/http/index.js"
import { fail } from "../src/sdk/worker.js"
import type { QuarantinedEvent } from "../projections/runtime.js"
import { rebuildProjectionState } from "../projections/rebuild.js"
import { readTaskState } from "../src/eventlog/taskStates.js"
import { TaskDocs } from "../projections/docs.js"
import { fold, type TaskState } from "../src/domain/events.js"
import { liveEntries, PipelinedKv } from "../src/eventlog/kv.js"
import { projectionsBucket, readModelFlushSubject, taskStateBucket, taskStateKey } from "../streams/definitions.js"
import { askAndWait } from "../src/eventlog/connection.js"
import type { RunningBroker } from "../src/broker.js"
import { brokerConfig, freshNaming, projectionsCaughtUp, provision, useNatsServer, waitFor } from "./support/harness.js"

const nats = useNatsServer()

/** Every task state in the bucket by key (the writer's barrier key, `_codeq.barrier`, left out). */
const readAllTaskStates = async (kv: KV): Promise<Map<string, TaskState>> => {
  const states = new Map<string, TaskState>()
  for (const [key, entry] of await liveEntries(kv, ">")) if (!key.startsWith("_")) states.set(key, JSON.parse(new TextDecoder().decode(entry.value)) as TaskState)
  return states
}

const caughtUp = (broker: RunningBroker, client: CodeqClient, projection: string) => projectionsCaughtUp(broker, client.nc, client.naming, [projection])

describe("projections", () => {
  it("rebuilds task-state after 10,000 tasks in mixed states into a read model deeply equal to the live one", async () => {
    const naming = freshNaming()
    const broker = await startBroker(brokerConfig(nats.url(), naming))
    const client = await CodeqClient.connect({ servers: nats.url(), naming })
    const commands = ["done", "broken", "waiting"]
    const results = await client.producer("acme").createMany(Array.from({ length: 10_000 }, (_, i) => ({ command: commands[i % 3] ?? "done", priority: i % 10, payload: { i } })))
    const ids = results.map((r) => (r.ok ? r.task.id : ""))
    const worker = client.worker("acme", { workerId: "mixer" })
    let handled = 0
    const running = worker.run(["done", "broken"], (task) => {
      handled++
      return task.command === "broken" ? fail("broken on purpose") : { ok: true }
    }, { concurrency: 64 })
    await waitFor(() => handled >= 6_667 || undefined, { timeoutMs: 120_000, what: "the done and broken tasks to run" })
    await worker.stop()
    await running
    for (const id of ids.filter((_, i) => i % 3 === 2).slice(0, 50)) await client.tasks.cancel("acme", id)
    await waitFor(() => caughtUp(broker, client, "task-state"), { timeoutMs: 120_000, what: "task-state to catch up" })
    const kv = await client.nc.jetstream().views.kv(taskStateBucket(naming))
    const live = await readAllTaskStates(kv)
    expect(live.size).toBe(10_000)
    const statuses = new Set([...live.values()].map((s) => s.status))
    expect(statuses).toEqual(new Set(["COMPLETED", "FAILED", "PENDING", "CANCELLED"]))
    await broker.stop()

    let lastProgress = { handled: 0, total: 0 }
    const replayed = await rebuildProjectionState(client.nc, client.log, "task-state", { onProgress: (p) => (lastProgress = p) })
    expect(replayed).toBeGreaterThan(10_000)
    expect(lastProgress.handled).toBe(lastProgress.total)
    const rebuilt = await readAllTaskStates(await client.nc.jetstream().views.kv(taskStateBucket(naming)))
    expect(rebuilt).toEqual(live)
    await client.close()
  }, 300_000)

  it("keeps task-state right when a task's events arrive out of order (as across broker instances)", async () => {
    const naming = freshNaming()
    const nc = await nats.connect()
    await provision(nc, naming)
    const client = await CodeqClient.connect({ connection: nc, naming })
    // No broker here: the transitions go straight through the repository.
    const task = await client.producer("acme").create({ command: "shuffle" })
    const base = { taskId: task.id, tenant: "acme", workerId: "w" }
    await client.repo.apply("acme", task.id, (now) => ({ ...base, now, type: "ClaimTask", leaseSeconds: 30, leaseHandle: "none" }))
    await client.repo.apply("acme", task.id, (now) => ({ ...base, now, type: "CompleteTask", result: 7 }))
    const history = await client.log.readTask("acme", task.id)
    expect(history.events.map((e) => e.prevSeq)).toEqual([0, history.events[0]?.seq, history.events[1]?.seq])
    const bucket = `${naming.streamPrefix}_SHUFFLE`
    const kv = await nc.jetstream().views.kv(bucket)
    const docs = new TaskDocs(new PipelinedKv(client.log.publisher, bucket), client.log)
    const [created, claim, completed] = history.events
    if (created === undefined || claim === undefined || completed === undefined) throw new Error("missing events")
    // Out of order, then every event again: the claim finds no state at its predecessor and the
    // task is refolded from the log; what is already folded changes nothing.
    for (const stored of [claim, created, completed, created, claim, completed]) {
      await docs.prepare([stored])
      docs.apply(stored)
    }
    await docs.flush(true)
    expect(await readTaskState(kv, "acme", task.id)).toEqual(fold(history.events))
    expect((await readTaskState(kv, "acme", task.id))?.status).toBe("COMPLETED")
    await client.close()
  })

  it("stands by when its projections lease is taken from it, leads again once that lease runs out, and dispatches what was created meanwhile", async () => {
    const naming = freshNaming()
    // Renewed every 300 ms: the lease taken below is noticed at the next renewal.
    const broker = await startBroker(brokerConfig(nats.url(), naming), { leaseTtlMs: 900 })
    const client = await CodeqClient.connect({ servers: nats.url(), naming })
    try {
      const leases = await client.nc.jetstream().views.kv(projectionsBucket(naming))
      const holderNow = async () => {
        const entry = await leases.get("leader")
        return entry === null || entry.value.length === 0 ? undefined : (JSON.parse(new TextDecoder().decode(entry.value)) as { holder: string; until: number })
      }
      await waitFor(() => broker.projections.leading || undefined, { what: "the broker to lead" })
      const own = (await holderNow())?.holder
      expect(own).toBeDefined()
      // Another holder, without a presence subject to ask: it counts as live until its time runs out.
      await leases.put("leader", new TextEncoder().encode(JSON.stringify({ holder: "intruder", until: Date.now() + 3_000 })))
      await waitFor(() => !broker.projections.leading || undefined, { what: "the broker to notice at its next renewal and stand by" })
      const task = await client.producer("acme").create({ command: "later" })
      expect((await holderNow())?.holder).toBe("intruder")
      await waitFor(async () => ((await holderNow())?.holder === own && broker.projections.leading) || undefined, { timeoutMs: 10_000, what: "the broker to lead again" })
      const claimed = await client.tasks.claim("acme", ["later"], { workerId: "w", waitSeconds: 10 })
      expect(claimed?.task.id).toBe(task.id)
    } finally {
      await broker.stop()
      await client.close()
    }
  })
  it("quarantines a hand-published garbage event, reporting its sequence, and every projection keeps going", async () => {
    const naming = freshNaming()
    const nc = await nats.connect()
    await provision(nc, naming)
    const quarantined: Array<QuarantinedEvent> = []
    const broker = await startBroker(brokerConfig(nats.url(), naming), { onQuarantine: (e) => quarantined.push(e) })
    const client = await CodeqClient.connect({ connection: nc, naming })
    const ack = await nc.jetstream().publish(`${naming.subjectRoot}.evt.acme.00000000-0000-4000-8000-000000000000`, new TextEncoder().encode("{\"type\":\"Nonsense\"}"))
    const task = await client.producer("acme").create({ command: "after-garbage" })
    const claimed = await client.tasks.claim("acme", ["after-garbage"], { workerId: "w", waitSeconds: 10 })
    expect(claimed?.task.id).toBe(task.id)
    await client.tasks.settleLease("acme", task.id, { workerId: "w" }, { type: "complete" })
    const kv = await nc.jetstream().views.kv(taskStateBucket(naming))
    await waitFor(async () => (await readTaskState(kv, "acme", task.id))?.status === "COMPLETED", { what: "task-state past the garbage" })
    await waitFor(() => new Set(quarantined.map((q) => q.projection)).size === 5 || undefined, { what: "every projection to report the garbage" })
    expect(quarantined.every((q) => q.seq === ack.seq)).toBe(true)
    const text = await broker.metrics.render()
    expect(text).toContain('codeq_events_quarantined_total{projection="task-state"} 1')
    await broker.stop()
    await client.close()
  })

  it("serves the Prometheus series on /metrics with the counts of a known run", async () => {
    const naming = freshNaming()
    const broker = await startBroker(brokerConfig(nats.url(), naming))
    const client = await CodeqClient.connect({ servers: nats.url(), naming })
    const producer = client.producer("acme")
    for (let i = 0; i < 5; i++) await producer.create({ command: "resize" })
    for (let i = 0; i < 3; i++) await producer.create({ command: "encode", maxAttempts: 1 })
    await producer.create({ command: "idle", priority: 4 })
    for (let i = 0; i < 5; i++) {
      const c = await client.tasks.claim("acme", ["resize"], { workerId: "w", waitSeconds: 10 })
      await client.tasks.settleLease("acme", c?.task.id ?? "", { workerId: "w" }, i < 4 ? { type: "complete" } : { type: "fail", error: "x" })
    }
    for (let i = 0; i < 3; i++) {
      const c = await client.tasks.claim("acme", ["encode"], { workerId: "w", waitSeconds: 10 })
      await client.tasks.settleLease("acme", c?.task.id ?? "", { workerId: "w" }, { type: "nack", reason: "no", delaySeconds: 0 })
    }
    await waitFor(() => caughtUp(broker, client, "metrics"), { what: "the metrics projection to catch up" })
    await waitFor(() => caughtUp(broker, client, "dead-letters"), { what: "the dead-letter index to catch up" })
    const http = await startHttpServer({ client, auth: { staticTokens: [] }, port: 0, host: "127.0.0.1", metrics: broker.metrics })
    const response = await fetch(`${http.url}/metrics`)
    expect(response.headers.get("content-type")).toContain("text/plain")
    const text = await response.text()
    await http.close()
    expect(text).toContain('codeq_task_created_total{command="resize"} 5')
    expect(text).toContain('codeq_task_created_total{command="encode"} 3')
    expect(text).toContain('codeq_task_claimed_total{command="resize"} 5')
    expect(text).toContain('codeq_task_completed_total{command="resize",status="COMPLETED"} 4')
    expect(text).toContain('codeq_task_completed_total{command="resize",status="FAILED"} 1')
    expect(text).toContain('codeq_task_dead_lettered_total{command="encode"} 3')
    expect(text).toContain('codeq_dlq_depth{tenant="acme",command="encode"} 3')
    expect(text).toContain('codeq_queue_depth{tenant="acme",command="idle",lane="4"} 1')
    expect(text).toContain('codeq_task_processing_latency_seconds_count{command="resize"} 5')
    expect(text).toMatch(/codeq_projection_lag_events\{projection="metrics"\} 0/)
    await broker.stop()
    await client.close()
  })
  it("writes a waiting task's document when a reader asks and not before: a listing and the queue statistics right after a create show it", async () => {
    const naming = freshNaming()
    const broker = await startBroker(brokerConfig(nats.url(), naming))
    const client = await CodeqClient.connect({ servers: nats.url(), naming })
    const kv = await client.nc.jetstream().views.kv(taskStateBucket(naming))
    const task = await client.producer("acme").create({ command: "fresh" })
    const created = (await client.log.readTask("acme", task.id)).events[0]?.seq ?? Number.NaN
    // Applied (its claim is dispatched), and still unwritten: nobody has read yet.
    await waitFor(async () => ((await broker.projections.positions()).get("dispatcher") ?? 0) >= created || undefined, { what: "the create applied" })
    expect(await kv.get(taskStateKey("acme", task.id))).toBeNull()
    // No waiting here: each read asks the leader to write first.
    expect((await client.tasks.list("acme", { status: "PENDING", command: "fresh" })).map((t) => t.id)).toEqual([task.id])
    expect((await client.tasks.queue("acme", "fresh")).ready).toBe(1)
    expect((await kv.get(taskStateKey("acme", task.id)))?.operation).toBe("PUT")
    // What the log held when the reader asked is applied before it is written: a task created just
    // before a listing is in it.
    const next = await client.producer("acme").create({ command: "fresh" })
    expect((await client.tasks.list("acme", { status: "PENDING", command: "fresh" })).map((t) => t.id)).toEqual([next.id, task.id])
    // A dead letter too: listed by the next read, with no waiting.
    const doomed = await client.producer("acme").create({ command: "doomed", maxAttempts: 1 })
    const claimed = await client.tasks.claim("acme", ["doomed"], { workerId: "w", waitSeconds: 10 })
    expect(claimed?.task.id).toBe(doomed.id)
    await client.tasks.settleLease("acme", doomed.id, { workerId: "w" }, { type: "nack", reason: "no", delaySeconds: 0 })
    expect((await client.tasks.deadLetters("acme", "doomed")).map((d) => d.taskId)).toEqual([doomed.id])
    // The leader answers its own broker's question too.
    expect(await broker.projections.flush()).toBe(true)
    await broker.stop()
    // Nobody leads: the server says so at once, and the reader reads what is written.
    expect(await askAndWait(client.nc, readModelFlushSubject(naming), 600_000)).toBe(false)
    expect((await client.tasks.list("acme", { status: "PENDING", command: "fresh" })).map((t) => t.id)).toEqual([next.id, task.id])
    await client.close()
  })
})
