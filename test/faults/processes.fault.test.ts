/**
 * Processes dying (issue 13), with the real `codeq` binary as separate child processes on a private
 * nats-server, everything on loopback:
 *
 * - a `codeq worker` SIGKILLed mid-task: its tasks come back when their lease runs out and a
 *   second worker process completes them, once;
 * - a `codeq serve` SIGKILLed mid-dispatch and mid-webhook, and a new one started: what the first
 *   left undispatched is dispatched, every webhook reaches the receiver and is recorded once;
 * - a webhook receiver refusing connections for a while: every webhook delivered once it is back;
 * - NATS unreachable: at start (what `serve` does then), and under a running broker (503 with
 *   Retry-After, serving again once NATS is back, and SIGTERM with NATS down exits within 2 s).
 *
 * Each ends with the accounting read from the log: nothing acknowledged lost, nothing completed
 * twice, and no task waiting longer than its lease plus 5 s after the fault.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { connect, type NatsConnection } from "nats"
import { startBroker } from "../../src/broker.js"
import type { StoredEvent } from "../../src/domain/events.js"
import { CodeqClient } from "../../src/sdk/client.js"
import { freePort, startNatsServer, type NatsServerHandle } from "../../src/testing/natsServer.js"
import type { Naming } from "../../streams/definitions.js"
import { Ledger, accountFromLog, describeFate, produce, renderAccounting, type Accounting } from "../support/accounting.js"
import { brokerConfig, freshNaming, provision, waitFor } from "../support/harness.js"
import { WebhookReceiver, codeqEnv, httpCall, killChildren, logLines, spawnCodeq, type CodeqChild } from "./processes.support.js"

const TENANT = "acme"
const LEASE_SECONDS = 5
/** The issue's bound: no task waits longer than its lease plus 5 s after the fault. */
const WAIT_BOUND_MS = (LEASE_SECONDS + 5) * 1000
const TOKENS = { producer: "faults-producer-token", worker: "faults-worker-token-1" } as const
const STATIC_TOKENS = JSON.stringify([
  { token: TOKENS.producer, tenant: TENANT, subject: "producer", role: "producer" },
  { token: TOKENS.worker, tenant: TENANT, subject: "http-worker", role: "worker" }
])

let server: NatsServerHandle
const closers: Array<() => Promise<unknown>> = []
beforeAll(async () => {
  server = await startNatsServer({ ownServer: true })
})
afterAll(async () => {
  await killChildren()
  for (const close of closers.reverse()) await close().catch(() => undefined)
  await server?.stop()
})

const connectTo = async (url: string): Promise<NatsConnection> => {
  const nc = await connect({ servers: url, noAsyncTraces: true, maxReconnectAttempts: -1, reconnectTimeWait: 250 })
  closers.push(() => nc.close())
  return nc
}

const clientOf = async (nc: NatsConnection, naming: Naming): Promise<CodeqClient> => {
  const client = await CodeqClient.connect({ connection: nc, naming })
  closers.push(() => client.close())
  return client
}

/** Each task's events, read from the log. */
const readAll = async (client: CodeqClient, ids: Iterable<string>): Promise<Map<string, ReadonlyArray<StoredEvent>>> => {
  const out = new Map<string, ReadonlyArray<StoredEvent>>()
  await Promise.all([...ids].map(async (id) => out.set(id, (await client.log.readTask(TENANT, id)).events)))
  return out
}

const ofType = <T extends StoredEvent["event"]["type"]>(events: ReadonlyArray<StoredEvent> | undefined, type: T) =>
  (events ?? []).filter((e): e is StoredEvent<Extract<StoredEvent["event"], { type: T }>> => e.event.type === type)

const ENDED = new Set(["TaskCompleted", "TaskFailed", "TaskDeadLettered", "TaskCancelled"])
const ended = (events: ReadonlyArray<StoredEvent> | undefined) => (events ?? []).some((e) => ENDED.has(e.event.type))

/** The issue's assertions on every accounting. */
const expectAccounted = (a: Accounting, tasks: number, waitBoundMs = WAIT_BOUND_MS) => {
  const slowest = describeFate(a.longestWaitTask === undefined ? undefined : a.fates.get(a.longestWaitTask))
  expect(a.lost).toBe(0)
  expect(a.completedTwice).toBe(0)
  expect(a.createdAcked).toBe(tasks)
  expect(a.pending, slowest).toBe(0)
  expect(a.completedOnce).toBe(a.inLog)
  expect(a.longestWaitMs, slowest).toBeLessThanOrEqual(waitBoundMs)
}

const slowestOf = (a: Accounting) => describeFate(a.longestWaitTask === undefined ? undefined : a.fates.get(a.longestWaitTask))

/** Waits until a `codeq serve` child answers /readyz 200; fails at once with its output when it exits. */
const ready = async (base: string, child: CodeqChild, timeoutMs = 30_000): Promise<void> => {
  const state = await waitFor(
    async () => {
      if (child.exited) return "exited"
      try {
        return (await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2_000) })).ok ? "ready" : false
      } catch {
        return false
      }
    },
    { timeoutMs, intervalMs: 100, what: "codeq serve to be ready" }
  )
  if (state === "exited") throw new Error(`codeq serve exited before it was ready:\n${child.lines.join("\n")}`)
}

const serveEnv = (natsUrl: string, naming: Naming, httpPort: number, extra: Record<string, string> = {}) =>
  codeqEnv(natsUrl, naming, {
    CODEQ_HTTP_PORT: String(httpPort),
    CODEQ_HTTP_HOST: "127.0.0.1",
    CODEQ_HTTP_STATIC_TOKENS: STATIC_TOKENS,
    CODEQ_WEBHOOK_ALLOW_PRIVATE_NETWORKS: "true",
    ...extra
  })

class UnexpectedAnswer extends Error {}

/**
 * Creates a task over HTTP as a producer should: the same idempotency key again after a 503 or a
 * refused or cut connection, until it is acknowledged (202) or the deadline passes.
 */
const httpCreate = async (base: string, ledger: Ledger, body: Record<string, unknown>, deadlineMs = 60_000): Promise<string> => {
  const deadline = Date.now() + deadlineMs
  for (;;) {
    try {
      const res = await httpCall(base, "POST", "/v1/codeq/tasks", TOKENS.producer, body)
      if (res.status === 202 && typeof res.json?.id === "string") {
        ledger.acked.set(res.json.id, Date.now())
        return res.json.id
      }
      if (res.status !== 503) throw new UnexpectedAnswer(`create answered ${res.status}: ${JSON.stringify(res.json)}`)
    } catch (error) {
      if (error instanceof UnexpectedAnswer || Date.now() > deadline) throw error
    }
    ledger.createRetries++
    // A producer's back-off between attempts, not a synchronisation.
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** Runs `count` jobs, `concurrency` at a time. */
const pool = async (count: number, concurrency: number, job: (i: number) => Promise<unknown>): Promise<void> => {
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) await job(next++)
  }))
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`

/** `promise`, or a failure naming `what` once `ms` have passed. */
const within = <T>(promise: Promise<T>, ms: number, what: string): Promise<T> => {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)))
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer))
}

describe("processes killed mid-work", () => {
  it("a worker process SIGKILLed mid-task: its tasks go to a second worker process when their lease runs out, and complete once", async () => {
    const TASKS = 40
    const COMMAND = "proc-worker"
    const naming = freshNaming()
    const nc = await connectTo(server.url)
    await provision(nc, naming)
    const broker = await startBroker(brokerConfig(server.url, naming))
    closers.push(() => broker.stop())
    const client = await clientOf(nc, naming)
    const ledger = new Ledger()
    // The lease is the task's: `codeq worker` claims with the task's lease.
    await produce(client.producer(TENANT), ledger, TASKS, (i) => ({ command: COMMAND, payload: { i }, leaseSeconds: LEASE_SECONDS }))
    const ids = [...ledger.acked.keys()]
    const handled = (line: string) => {
      for (const entry of logLines([line], "task handled")) ledger.handlerFinished(String(entry.task_id))
    }
    const env = codeqEnv(server.url, naming, { LOG_LEVEL: "info" })
    const worker = (id: string, workMs: number) =>
      spawnCodeq(["worker", "--tenant", TENANT, "--command", COMMAND, "--concurrency", "6", "--work-ms", String(workMs), "--worker-id", id], env, handled)
    /** Tasks whose last claim is `workerId`'s and that have not ended. */
    const heldBy = async (workerId: string) => {
      const histories = await readAll(client, ids)
      return ids.filter((id) => {
        const events = histories.get(id)
        return !ended(events) && ofType(events, "TaskClaimed").at(-1)?.event.workerId === workerId
      })
    }

    const workerA = worker("worker-a", 1_500)
    // Mid-task: a first round of handlers done, and all six handlers busy with claimed tasks.
    await waitFor(async () => ledger.handled.size >= 6 && (await heldBy("worker-a")).length >= 6, { timeoutMs: 30_000, intervalMs: 100, what: "worker A to be busy mid-task" })
    const faultAt = Date.now()
    const killed = await workerA.kill("SIGKILL")
    const held = await heldBy("worker-a")

    const workerB = worker("worker-b", 20)
    await waitFor(async () => [...(await readAll(client, ids)).values()].every(ended), {
      timeoutMs: WAIT_BOUND_MS + 20_000,
      intervalMs: 250,
      what: "every task to end"
    }).catch(() => undefined)
    const stoppedB = await workerB.kill("SIGTERM")

    const accounting = await accountFromLog(client.log, nc, TENANT, ledger, { faultAt })
    const heldHistories = await readAll(client, held)
    const takenOver = held.filter((id) => {
      const events = heldHistories.get(id)
      return ofType(events, "TaskLeaseExpired").some((e) => e.event.workerId === "worker-a") && ofType(events, "TaskCompleted").at(-1)?.event.workerId === "worker-b"
    })
    const reclaimMs = Math.max(0, ...held.map((id) => (ofType(heldHistories.get(id), "TaskClaimed").find((e) => e.event.workerId === "worker-b")?.time.getTime() ?? Infinity) - faultAt))
    console.log(
      renderAccounting("a codeq worker process SIGKILLed mid-task", accounting, {
        "worker A": `${killed.signal ?? `exit ${killed.code}`} while holding ${held.length} claimed tasks mid-handler (lease ${LEASE_SECONDS} s)`,
        "those tasks": `lease expired and completed by worker B: ${takenOver.length} of ${held.length}; longest from the kill to worker B's claim ${seconds(reclaimMs)}`,
        "handler runs that finished (both workers)": [...ledger.handled.values()].reduce((sum, n) => sum + n, 0),
        "worker B on SIGTERM": `exit ${stoppedB.code}`,
        "slowest task": slowestOf(accounting)
      })
    )
    expectAccounted(accounting, TASKS)
    expect(killed.signal).toBe("SIGKILL")
    expect(held.length).toBeGreaterThanOrEqual(1)
    expect(takenOver).toEqual(held)
    for (const id of held) {
      const claims = ofType(heldHistories.get(id), "TaskClaimed")
      expect(claims.map((e) => [e.event.workerId, e.event.attempt]), id).toEqual([["worker-a", 1], ["worker-b", 2]])
    }
    expect(reclaimMs).toBeLessThanOrEqual(WAIT_BOUND_MS)
    expect(stoppedB.code).toBe(0)
  })

  it("a broker process SIGKILLed mid-dispatch and mid-webhook: a new broker dispatches the rest, every webhook is delivered and recorded once, nothing completes twice", async () => {
    const FIRST = 40
    const RACING = 20
    const WHILE_DOWN = 20
    const COMMAND = "proc-broker"
    // A broker killed while it leads the projections keeps their lease until it runs out, but a
    // standby finds nobody answering on the holder's presence subject and takes over at once
    // (projections/leadership.ts): tasks wait no longer than their lease plus 5 s.
    const leaseSeconds = LEASE_SECONDS
    const naming = freshNaming()
    // Answers take 0.1-1 s, so that POSTs are in flight when the broker dies.
    const receiver = await WebhookReceiver.start({ delayMs: (n) => 100 + (n % 10) * 100 })
    closers.push(() => receiver.close())
    const httpPort = await freePort()
    const base = `http://127.0.0.1:${httpPort}`
    // Short webhook timeouts: a job in flight at the dead broker comes back after its ack wait
    // (connect + response timeouts + 5 s).
    const env = serveEnv(server.url, naming, httpPort, { CODEQ_WEBHOOK_CONNECT_TIMEOUT_MS: "1000", CODEQ_WEBHOOK_RESPONSE_TIMEOUT_MS: "2000" })
    const brokerA = spawnCodeq(["serve"], env)
    await ready(base, brokerA)
    const nc = await connectTo(server.url)
    const client = await clientOf(nc, naming)
    const ledger = new Ledger()
    const worker = client.worker(TENANT, { workerId: "sdk-worker" })
    const running = worker.run([COMMAND], ledger.handler(), { concurrency: 8 })
    const input = (i: number, key: string) => ({ command: COMMAND, payload: { i }, webhook: receiver.url, leaseSeconds, idempotencyKey: key })
    let brokerB: CodeqChild | undefined
    try {
      await pool(FIRST, 4, (i) => httpCreate(base, ledger, input(i, `first-${i}`)))
      // Mid-webhook: some POSTs answered, several in flight.
      await waitFor(() => receiver.answered >= 8 && receiver.inFlight >= 3, { timeoutMs: 20_000, intervalMs: 5, what: "webhook POSTs in flight" })
      // Creates race the kill over HTTP; they are sent again (same key) until the new broker takes them.
      const racing = pool(RACING, 2, (i) => httpCreate(base, ledger, input(FIRST + i, `racing-${i}`)))
      const postsInFlight = receiver.inFlight
      const faultAt = Date.now()
      const killed = await brokerA.kill("SIGKILL")
      const deliveredAtKill = [...(await readAll(client, ledger.acked.keys())).values()].filter((events) => ofType(events, "WebhookDelivered").length > 0).length
      // Mid-dispatch: tasks created while no broker runs wait in the log for the next one.
      const downStart = Date.now()
      await produce(client.producer(TENANT), ledger, WHILE_DOWN, (i) => input(FIRST + RACING + i, ""), { keyPrefix: `down-${naming.subjectRoot}` })
      brokerB = spawnCodeq(["serve"], env)
      await ready(base, brokerB)
      const downMs = Date.now() - downStart
      await racing
      const ids = [...ledger.acked.keys()]
      await waitFor(
        async () => [...(await readAll(client, ids)).values()].every((events) => ofType(events, "TaskCompleted").length > 0 && ofType(events, "WebhookDelivered").length > 0),
        { timeoutMs: 40_000, intervalMs: 250, what: "every task completed and its webhook delivered" }
      ).catch(() => undefined)

      const accounting = await accountFromLog(client.log, nc, TENANT, ledger, { faultAt })
      const histories = await readAll(client, ids)
      const seen = receiver.byDeliveryId()
      const expectedIds = new Map<string, string>()
      const problems: Array<string> = []
      let lastDeliveredAt = 0
      for (const id of ids) {
        const events = histories.get(id) ?? []
        const completed = ofType(events, "TaskCompleted")[0]
        const delivered = ofType(events, "WebhookDelivered")
        if (completed === undefined) continue
        const deliveryId = `${id}:${completed.seq}`
        expectedIds.set(deliveryId, id)
        if (delivered.length !== 1) problems.push(`${describeFate(accounting.fates.get(id))}: WebhookDelivered ×${delivered.length}`)
        if ((seen.get(deliveryId) ?? 0) < 1) problems.push(`${id}: the receiver never saw ${deliveryId}`)
        if (ofType(events, "WebhookFailed").some((e) => e.event.final)) problems.push(`${id}: a final WebhookFailed`)
        lastDeliveredAt = Math.max(lastDeliveredAt, delivered[0]?.time.getTime() ?? 0)
      }
      const unknown = [...seen.keys()].filter((deliveryId) => !expectedIds.has(deliveryId))
      const repeated = [...seen.values()].reduce((sum, n) => sum + n - 1, 0)
      console.log(
        renderAccounting("a codeq serve process SIGKILLed mid-dispatch and mid-webhook", accounting, {
          "broker A": `${killed.signal ?? `exit ${killed.code}`} with ${postsInFlight} webhook POSTs in flight and ${deliveredAtKill} webhooks recorded delivered; broker B ready ${seconds(downMs)} later`,
          "creates": `${FIRST} before the kill, ${RACING} over HTTP racing it, ${WHILE_DOWN} into the log while no broker ran`,
          "webhooks": `POSTs received ${receiver.received.length} for ${seen.size} deliveries (sent again after the kill: ${repeated}); WebhookDelivered once per task: ${ids.length - problems.length} of ${ids.length}; last delivered ${seconds(lastDeliveredAt - faultAt)} after the kill`,
          "dispatch stalled": `${seconds(accounting.longestWaitMs)} at most`,
          "slowest task": slowestOf(accounting)
        })
      )
      expectAccounted(accounting, FIRST + RACING + WHILE_DOWN, (leaseSeconds + 5) * 1000)
      expect(ledger.acked.size).toBe(FIRST + RACING + WHILE_DOWN)
      expect(postsInFlight).toBeGreaterThanOrEqual(1)
      expect(problems).toEqual([])
      expect(unknown).toEqual([])
      expect(expectedIds.size).toBe(ids.length)
      const stopped = await brokerB.kill("SIGTERM")
      expect(stopped.code).toBe(0)
    } finally {
      await worker.stop()
      await running
      await brokerA.kill("SIGKILL")
      await brokerB?.kill("SIGKILL")
    }
  })

  it("a webhook receiver refusing connections for a while: every webhook is delivered once it listens again, recorded once per task", async () => {
    const TASKS = 30
    const COMMAND = "proc-receiver"
    const naming = freshNaming()
    const nc = await connectTo(server.url)
    await provision(nc, naming)
    // The default webhook settings: 5 attempts, retries after 2 s, 4 s, 8 s, 16 s.
    const settings = brokerConfig(server.url, naming)
    const broker = await startBroker(settings)
    closers.push(() => broker.stop())
    const receiver = await WebhookReceiver.start()
    closers.push(() => receiver.close())
    // Nothing listens on the receiver's port: every connection is refused.
    await receiver.close()
    const faultAt = Date.now()
    const client = await clientOf(nc, naming)
    const ledger = new Ledger()
    const worker = client.worker(TENANT, { workerId: "sdk-worker" })
    const running = worker.run([COMMAND], ledger.handler(), { concurrency: 8 })
    try {
      await produce(client.producer(TENANT), ledger, TASKS, (i) => ({ command: COMMAND, payload: { i }, webhook: receiver.url, leaseSeconds: LEASE_SECONDS }))
      const ids = [...ledger.acked.keys()]
      // Down for a while: two refused attempts recorded for every task.
      await waitFor(async () => [...(await readAll(client, ids)).values()].every((events) => ofType(events, "WebhookFailed").length >= 2), {
        timeoutMs: 30_000,
        intervalMs: 100,
        what: "two refused attempts per task"
      })
      await receiver.open()
      const reopenedAt = Date.now()
      await waitFor(async () => [...(await readAll(client, ids)).values()].every((events) => ofType(events, "WebhookDelivered").length > 0), {
        timeoutMs: 30_000,
        intervalMs: 100,
        what: "every webhook delivered"
      }).catch(() => undefined)

      const accounting = await accountFromLog(client.log, nc, TENANT, ledger, { faultAt })
      const histories = await readAll(client, ids)
      const seen = receiver.byDeliveryId()
      const problems: Array<string> = []
      let failedAttempts = 0
      let lastDeliveredAt = reopenedAt
      for (const id of ids) {
        const events = histories.get(id) ?? []
        const completed = ofType(events, "TaskCompleted")[0]
        const failed = ofType(events, "WebhookFailed")
        const delivered = ofType(events, "WebhookDelivered")
        failedAttempts += failed.length
        if (completed === undefined) continue
        if (delivered.length !== 1) problems.push(`${describeFate(accounting.fates.get(id))}: WebhookDelivered ×${delivered.length}`)
        else if (delivered[0]?.event.attempt !== failed.length + 1) problems.push(`${id}: delivered as attempt ${delivered[0]?.event.attempt} after ${failed.length} failures`)
        if (failed.some((e) => e.event.final || e.event.error !== "refused")) problems.push(`${id}: failures ${failed.map((e) => `${e.event.error}${e.event.final ? " (final)" : ""}`).join(", ")}`)
        if ((seen.get(`${id}:${completed.seq}`) ?? 0) < 1) problems.push(`${id}: the receiver never saw ${id}:${completed.seq}`)
        lastDeliveredAt = Math.max(lastDeliveredAt, delivered[0]?.time.getTime() ?? 0)
      }
      // Once back, the next retry delivers: at most the third attempt's back-off (4 s) away.
      const afterReopenMs = lastDeliveredAt - reopenedAt
      console.log(
        renderAccounting("a webhook receiver refusing connections, then back", accounting, {
          "receiver": `refused connections for ${seconds(reopenedAt - faultAt)}; refused attempts recorded ${failedAttempts} (WebhookFailed, none final)`,
          "webhooks": `POSTs received ${receiver.received.length} for ${seen.size} deliveries; WebhookDelivered once per task: ${ids.length - problems.length} of ${ids.length}; last ${seconds(afterReopenMs)} after the receiver was back`,
          "slowest task": slowestOf(accounting)
        })
      )
      expectAccounted(accounting, TASKS)
      expect(problems).toEqual([])
      expect(seen.size).toBe(TASKS)
      expect(afterReopenMs).toBeLessThanOrEqual(settings.webhooks.baseDelaySeconds * 2 * 1000 + 5_000)
    } finally {
      await worker.stop()
      await running
    }
  })

  it("NATS unreachable: serve without NATS waits for it, alive but answering 503 with Retry-After, and serves once a nats-server is there; under an outage /readyz and the API answer 503 with Retry-After, it serves again when NATS is back, and SIGTERM with NATS down exits within 2 s", async () => {
    const COMMAND = "proc-nats"
    const naming = freshNaming()
    const natsPort = await freePort()
    const natsUrl = `nats://127.0.0.1:${natsPort}`
    const httpPort = await freePort()
    const base = `http://127.0.0.1:${httpPort}`
    const env = serveEnv(natsUrl, naming, httpPort, process.env.CODEQ_TEST_CHILD_LOGS ? { LOG_LEVEL: "info" } : {})
    const ledger = new Ledger()
    const body = (key: string) => ({ command: COMMAND, payload: { key }, leaseSeconds: LEASE_SECONDS, idempotencyKey: key })
    /** Claims and completes one task over HTTP as a worker. */
    const work = async (taskId: string) => {
      const claim = await httpCall(base, "POST", "/v1/codeq/tasks/claim", TOKENS.worker, { commands: [COMMAND], waitSeconds: 10 })
      expect(claim.status).toBe(200)
      expect(claim.json?.id).toBe(taskId)
      const result = await httpCall(base, "POST", `/v1/codeq/tasks/${taskId}/result`, TOKENS.worker, { status: "COMPLETED", result: { ok: true } })
      expect(result.status).toBe(200)
    }

    // 1. Nothing listens at NATS_URL and no embedded server may be started: serve waits, alive
    //    (/healthz 200) and not ready (/readyz and the API 503 with Retry-After).
    const broker = spawnCodeq(["serve"], env)
    const nats = await (async () => {
      try {
        const waitingHealth = await waitFor(async () => (await fetch(`${base}/healthz`).catch(() => undefined))?.status === 200, { timeoutMs: 15_000, what: "serve to answer /healthz while it waits for NATS" })
        expect(waitingHealth).toBe(true)
        const waitingReady = await fetch(`${base}/readyz`)
        expect(waitingReady.status).toBe(503)
        expect(waitingReady.headers.get("retry-after")).toBe("2")
        const waitingCreate = await httpCall(base, "POST", "/v1/codeq/tasks", TOKENS.producer, body("waiting"))
        expect(waitingCreate.status).toBe(503)
        expect(waitingCreate.headers.get("retry-after")).toBe("2")
        expect(broker.lines.join("\n")).toContain(`nothing answers at ${natsUrl} (connection refused)`)
        // 2. A nats-server appears on that port: the broker connects and serves.
        const server = await startNatsServer({ ownServer: true, port: natsPort })
        closers.push(() => server.stop())
        return server
      } catch (error) {
        await broker.kill("SIGKILL")
        throw error
      }
    })()
    const appearedAt = Date.now()
    try {
      await ready(base, broker)
      const servingMs = Date.now() - appearedAt
      const before = await httpCreate(base, ledger, body("before"))
      await work(before)

      // 3. NATS goes away under the running broker.
      const faultAt = Date.now()
      await nats.kill()
      const notReady = await waitFor(
        async () => {
          const res = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(5_000) })
          return res.status === 503 ? res : undefined
        },
        { timeoutMs: 10_000, intervalMs: 50, what: "/readyz to say not ready" }
      )
      const notReadyMs = Date.now() - faultAt
      const askedAt = Date.now()
      const refusedCreate = await httpCall(base, "POST", "/v1/codeq/tasks", TOKENS.producer, body("during"))
      const refusedCreateMs = Date.now() - askedAt
      expect(notReady.headers.get("retry-after")).toBe("2")
      expect(refusedCreate.status).toBe(503)
      expect(refusedCreate.headers.get("retry-after")).toBe("2")
      expect(refusedCreateMs).toBeLessThan(2_000)

      // 4. NATS is back on its store: the producer's retry (same key) is taken, and work goes on.
      const creating = httpCreate(base, ledger, body("during"))
      await nats.restart()
      const backAt = Date.now()
      await ready(base, broker)
      const readyAgainMs = Date.now() - backAt
      const during = await creating
      await work(during)

      // 5. NATS down again, and the broker told to stop.
      await nats.kill()
      await waitFor(async () => (await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(5_000) })).status === 503, { timeoutMs: 10_000, intervalMs: 50, what: "the broker to see NATS gone" })
      const termAt = Date.now()
      broker.proc.kill("SIGTERM")
      const stopped = await within(broker.exit, 15_000, "serve to exit on SIGTERM")
      const stopMs = stopped.at - termAt

      // The log, read once NATS is back.
      await nats.restart()
      const nc = await connectTo(natsUrl)
      const client = await clientOf(nc, naming)
      const accounting = await accountFromLog(client.log, nc, TENANT, ledger, { faultAt })
      console.log(
        renderAccounting("NATS unreachable at start, then lost and back under a running codeq serve", accounting, {
          "serve with nothing at NATS_URL": `waited: /healthz 200, /readyz and creates 503 with Retry-After; ready ${seconds(servingMs)} after a nats-server appeared`,
          "NATS killed under the broker": `/readyz 503 (Retry-After ${notReady.headers.get("retry-after")}) after ${seconds(notReadyMs)}; create 503 (Retry-After ${refusedCreate.headers.get("retry-after")}) in ${refusedCreateMs} ms`,
          "NATS back": `/readyz 200 ${seconds(readyAgainMs)} after the restart; the create sent again with its key was taken (retries ${ledger.createRetries})`,
          "SIGTERM with NATS down": `exit ${stopped.code ?? stopped.signal} in ${stopMs} ms`,
          "slowest task": slowestOf(accounting)
        })
      )
      expectAccounted(accounting, 2)
      expect(stopped.code).toBe(0)
      expect(stopMs).toBeLessThanOrEqual(2_000)
    } finally {
      await broker.kill("SIGKILL")
    }
  })
})
