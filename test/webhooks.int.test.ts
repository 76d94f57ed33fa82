import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { spawn, type ChildProcess } from "node:child_process"
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { startBroker } from "../src/broker.js"
import { CodeqClient } from "../src/sdk/client.js"
import { freePort } from "../src/testing/natsServer.js"
import { parseTraceparent } from "../src/tracing/codec.js"
import { signature } from "../src/webhooks/deliver.js"
import { brokerConfig, freshNaming, provision, recordSpans, useNatsServer, waitFor } from "./support/harness.js"
import { WEBHOOK_CONCURRENCY, WEBHOOK_CONSUMER } from "../projections/webhooks.js"
import { eventSubject, eventsStream, webhookJobSubject, webhooksStream, type Naming } from "../streams/definitions.js"
import { connect, type JetStreamManager } from "nats"
import { fold } from "../src/domain/events.js"

const nats = useNatsServer()

/** A real HTTP receiver: answers with `status(request)` and keeps every request. */
const receiver = async (status: (body: { taskId: string }) => number) => {
  const requests: Array<{ headers: IncomingHttpHeaders; body: string; answered: number }> = []
  const server: Server = createServer((req, res) => {
    let body = ""
    req.on("data", (chunk: Buffer) => (body += chunk.toString()))
    req.on("end", () => {
      const answered = status(JSON.parse(body) as { taskId: string })
      requests.push({ headers: req.headers, body, answered })
      res.writeHead(answered).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as AddressInfo
  return { url: `http://127.0.0.1:${port}/hook`, requests, close: () => new Promise<void>((resolve) => server.close(() => resolve())) }
}

/**
 * Every direct get of the events stream, as the server receives it (the subject and where it
 * starts), on a connection of the test's own: a round trip on it (`flush`) means every read the
 * server took before is in `reads`.
 */
const watchDirectGets = async (naming: Naming) => {
  const watcher = await connect({ servers: nats.url(), name: "direct-get-watcher" })
  const reads: Array<{ subject: string; seq: number }> = []
  watcher.subscribe(`$JS.API.DIRECT.GET.${eventsStream(naming)}`, {
    callback: (_error, msg) => {
      const request = JSON.parse(new TextDecoder().decode(msg.data)) as { next_by_subj?: string; seq?: number }
      if (request.next_by_subj !== undefined) reads.push({ subject: request.next_by_subj, seq: request.seq ?? 0 })
    }
  })
  await watcher.flush()
  return { watcher, reads }
}

/** Whether the outbox's consumer has handed out `sent` jobs and every one was answered: waiting on it reads no log. */
const jobsAnswered = async (jsm: JetStreamManager, naming: Naming, sent: number): Promise<boolean> => {
  const info = await jsm.consumers.info(webhooksStream(naming), WEBHOOK_CONSUMER)
  return info.delivered.stream_seq >= sent && info.num_pending === 0 && info.num_ack_pending === 0
}

/**
 * Creates a task with a webhook, completes it, and waits until its job is answered (reading no
 * log). Returns its history, its TaskCompleted, and the direct gets the delivery made of its
 * subject before this function read the history itself.
 */
const completeAndDeliver = async (c: CodeqClient, naming: Naming, watched: Awaited<ReturnType<typeof watchDirectGets>>, webhook: string, payload?: unknown) => {
  const task = await c.producer("acme").create({ command: "render", webhook, ...(payload === undefined ? {} : { payload }) })
  const claimed = await c.tasks.claim("acme", ["render"], { workerId: "w", waitSeconds: 10 })
  expect(claimed?.task.id).toBe(task.id)
  await c.tasks.settleLease("acme", task.id, { workerId: "w" }, { type: "complete", result: { pages: 3 } })
  const jsm = await watched.watcher.jetstreamManager()
  await waitFor(() => jobsAnswered(jsm, naming, 1), { what: "the delivery" })
  await watched.watcher.flush()
  const subject = eventSubject(naming, "acme", task.id)
  const delivering = watched.reads.filter((r) => r.subject === subject)
  const history = await c.log.readTask("acme", task.id)
  // The watcher sees reads of this subject (this one, the test's own): an empty `delivering` means none was made.
  await watched.watcher.flush()
  expect(watched.reads.filter((r) => r.subject === subject).length).toBeGreaterThan(delivering.length)
  expect(history.events.map((e) => e.event.type)).toEqual(["TaskCreated", "TaskClaimed", "TaskCompleted", "WebhookDelivered"])
  const completed = history.events.find((e) => e.event.type === "TaskCompleted")
  if (completed === undefined) throw new Error("no TaskCompleted")
  return { task, history, completed, subject, delivering, jsm }
}

describe("result webhooks", () => {
  let client: CodeqClient
  beforeAll(async () => {
    client = await CodeqClient.connect({ servers: nats.url() })
  })
  afterAll(() => client.close())

  it("retries a receiver that answers 500 three times, then delivers once, signed and traced from the delivery span", async () => {
    const naming = freshNaming()
    const recorder = recordSpans()
    const secret = "s3cr3t-for-tests"
    let calls = 0
    const hook = await receiver(() => (++calls <= 3 ? 500 : 200))
    const broker = await startBroker(brokerConfig(nats.url(), naming, { hmacSecret: secret, baseDelaySeconds: 0.2, maxDelaySeconds: 0.5 }), { tracerProvider: recorder.provider })
    const c = await CodeqClient.connect({ servers: nats.url(), naming, tracerProvider: recorder.provider })
    const task = await c.producer("acme").create({ command: "render", webhook: hook.url })
    const claimed = await c.tasks.claim("acme", ["render"], { workerId: "w", waitSeconds: 10 })
    expect(claimed?.task.id).toBe(task.id)
    await c.tasks.settleLease("acme", task.id, { workerId: "w" }, { type: "complete", result: { pages: 3 } })

    const history = await waitFor(async () => {
      const h = await c.log.readTask("acme", task.id)
      return h.events.some((e) => e.event.type === "WebhookDelivered") ? h : undefined
    }, { what: "the delivery" })
    const types = history.events.map((e) => e.event.type)
    expect(types.filter((t) => t === "WebhookFailed")).toHaveLength(3)
    expect(types.filter((t) => t === "WebhookDelivered")).toHaveLength(1)
    expect(hook.requests.map((r) => r.answered)).toEqual([500, 500, 500, 200])

    const accepted = hook.requests[3]
    if (accepted === undefined) throw new Error("no accepted request")
    const ts = Number(accepted.headers["x-codeq-timestamp"])
    expect(accepted.headers["x-codeq-signature"]).toBe(signature(secret, ts, accepted.body))
    expect(JSON.parse(accepted.body)).toMatchObject({ taskId: task.id, eventType: "render", status: "COMPLETED", result: { pages: 3 } })

    const completed = history.events.find((e) => e.event.type === "TaskCompleted")
    const delivered = history.events.find((e) => e.event.type === "WebhookDelivered")
    // The request carried the context of the span that wrote WebhookDelivered, a child of the submit.
    expect(accepted.headers.traceparent).toBe(delivered?.trace?.traceparent)
    expect(delivered?.trace?.parentSpanId).toBe(parseTraceparent(completed?.trace?.traceparent)?.spanId)
    const webhookSpans = recorder.spans().filter((s) => s.name === "codeq.webhook.task_result")
    expect(webhookSpans).toHaveLength(4)
    expect(webhookSpans.map((s) => s.attributes["codeq.webhook.attempt"])).toEqual([1, 2, 3, 4])
    expect(webhookSpans.every((s) => s.attributes["codeq.webhook.host"] === "127.0.0.1")).toBe(true)
    expect(JSON.stringify(webhookSpans.map((s) => s.attributes))).not.toContain(hook.url)
    await broker.stop()
    await c.close()
    await hook.close()
  })

  it("delivers a live task's first job from its snapshot without reading the log, and a job made again from the whole history", async () => {
    const naming = freshNaming()
    const hook = await receiver(() => 200)
    const watched = await watchDirectGets(naming)
    const { watcher, reads } = watched
    const broker = await startBroker(brokerConfig(nats.url(), naming))
    const c = await CodeqClient.connect({ servers: nats.url(), naming })
    const { task, history, completed, subject, delivering, jsm } = await completeAndDeliver(c, naming, watched, hook.url)
    // The task completed while this broker led (a fresh job), on the job's first delivery: nothing
    // but the job's own attempt can follow a completion, so the delivery read nothing at all.
    expect(delivering).toEqual([])
    expect(hook.requests).toHaveLength(1)
    expect(JSON.parse(hook.requests[0]?.body ?? "{}")).toMatchObject({ taskId: task.id, status: "COMPLETED", result: { pages: 3 } })

    // The same job again, not fresh (as a replay past the dedup window would make it), its snapshot
    // now stale: what follows the terminal event is read, the task's subject holds the
    // WebhookDelivered there, so the whole history is read and nothing is sent twice.
    const snapshot = { state: fold(history.events.filter((e) => e.seq <= completed.seq)), at: completed.event.at }
    await watcher.flush()
    reads.length = 0
    watcher.publish(webhookJobSubject(naming, "acme"), new TextEncoder().encode(JSON.stringify({ tenant: "acme", taskId: task.id, seq: completed.seq, snapshot })))
    await waitFor(() => jobsAnswered(jsm, naming, 2), { what: "the job answered" })
    await watcher.flush()
    const after = history.events.filter((e) => e.seq > completed.seq)
    expect(reads.filter((r) => r.subject === subject).map((r) => r.seq)).toEqual([completed.seq + 1, ...after.map((e) => e.seq + 1), 0, ...history.events.map((e) => e.seq + 1)])
    expect(hook.requests).toHaveLength(1)
    await watcher.close()
    await broker.stop()
    await c.close()
    await hook.close()
  })

  it("carries the task without its payload in the job, so a task with a 200 KiB payload is delivered without reading it", async () => {
    const naming = freshNaming()
    const hook = await receiver(() => 200)
    const watched = await watchDirectGets(naming)
    const { watcher } = watched
    // The job as the outbox publishes it.
    const jobs: Array<Uint8Array> = []
    watcher.subscribe(webhookJobSubject(naming, "acme"), { callback: (_error, msg) => void jobs.push(msg.data) })
    await watcher.flush()
    const broker = await startBroker(brokerConfig(nats.url(), naming))
    const c = await CodeqClient.connect({ servers: nats.url(), naming })
    try {
      const { task, delivering } = await completeAndDeliver(c, naming, watched, hook.url, { blob: "x".repeat(200 * 1024) })
      // Nobody read the task, payload and all: the job carried what the delivery needed.
      expect(delivering).toEqual([])
      expect(jobs).toHaveLength(1)
      const job = JSON.parse(new TextDecoder().decode(jobs[0])) as { snapshot?: { state: Record<string, unknown> }; fresh?: boolean }
      expect(job.fresh).toBe(true)
      expect(jobs[0]?.length).toBeLessThan(4 * 1024)
      expect(job.snapshot?.state).toMatchObject({ id: task.id, status: "COMPLETED", result: { pages: 3 } })
      expect(job.snapshot?.state).not.toHaveProperty("payload")
      expect(JSON.parse(hook.requests[0]?.body ?? "{}")).toMatchObject({ taskId: task.id, status: "COMPLETED", result: { pages: 3 } })
    } finally {
      await watcher.close()
      await broker.stop()
      await c.close()
      await hook.close()
    }
  })
  it("reads past the terminal event for a job of a task that ended before the broker led, and for a dead letter's", async () => {
    const naming = freshNaming()
    const hook = await receiver(() => 200)
    const watched = await watchDirectGets(naming)
    const { watcher, reads } = watched
    const nc = await nats.connect()
    await provision(nc, naming)
    const c = await CodeqClient.connect({ servers: nats.url(), naming })
    let broker: Awaited<ReturnType<typeof startBroker>> | undefined
    try {
      // Ended before any broker ran: the log holds it, but no term has seen it yet.
      const early = await c.producer("acme").create({ command: "render", webhook: hook.url })
      const claim = await c.repo.apply("acme", early.id, (now) => ({ type: "ClaimTask", taskId: early.id, tenant: "acme", now, workerId: "w", leaseSeconds: 60, leaseHandle: "by-hand" }))
      expect(claim.ok).toBe(true)
      const done = await c.repo.apply("acme", early.id, (now) => ({ type: "CompleteTask", taskId: early.id, tenant: "acme", now, workerId: "w", attempt: 1, result: { pages: 1 } }))
      if (!done.ok) throw new Error("not completed")
      const completedSeq = done.snapshot.version
      // From here on only the broker reads the log (the waits below read the consumer, not the log).
      await watcher.flush()
      reads.length = 0
      broker = await startBroker(brokerConfig(nats.url(), naming))
      const jsm = await watcher.jetstreamManager()
      const earlySubject = eventSubject(naming, "acme", early.id)
      await waitFor(() => jobsAnswered(jsm, naming, 1), { what: "the early task's delivery" })
      await watcher.flush()
      // At or below the horizon the term began with: the job may repeat an earlier term's, so the
      // delivery reads what follows the completion (nothing) before it posts.
      expect(reads.filter((r) => r.subject === earlySubject)).toEqual([{ subject: earlySubject, seq: completedSeq + 1 }])

      // A dead letter of this term: fresh, but an operator may requeue or purge it at any time, so
      // the delivery reads what follows it too.
      const doomed = await c.producer("acme").create({ command: "render", webhook: hook.url, maxAttempts: 1 })
      const claimed = await c.tasks.claim("acme", ["render"], { workerId: "w", waitSeconds: 10 })
      expect(claimed?.task.id).toBe(doomed.id)
      await c.tasks.settleLease("acme", doomed.id, { workerId: "w" }, { type: "nack", reason: "gives up", delaySeconds: 0 })
      await waitFor(() => jobsAnswered(jsm, naming, 2), { what: "the dead letter's delivery" })
      await watcher.flush()
      const doomedSubject = eventSubject(naming, "acme", doomed.id)
      const delivering = reads.filter((r) => r.subject === doomedSubject)
      const history = await c.log.readTask("acme", doomed.id)
      expect(history.events.map((e) => e.event.type)).toEqual(["TaskCreated", "TaskClaimed", "TaskNacked", "TaskDeadLettered", "WebhookDelivered"])
      const deadLettered = history.events.find((e) => e.event.type === "TaskDeadLettered")
      expect(delivering).toEqual([{ subject: doomedSubject, seq: (deadLettered?.seq ?? 0) + 1 }])
      expect(hook.requests.map((r) => (JSON.parse(r.body) as { taskId: string; status: string }).status)).toEqual(["COMPLETED", "DEAD_LETTERED"])
    } finally {
      await broker?.stop()
      await c.close()
      await nc.close()
      await watcher.close()
      await hook.close()
    }
  })

  it("refuses a loopback destination unless private networks are allowed, recording a final failure", async () => {
    const naming = freshNaming()
    const hook = await receiver(() => 200)
    const broker = await startBroker(brokerConfig(nats.url(), naming, { allowPrivateNetworks: false }))
    const c = await CodeqClient.connect({ servers: nats.url(), naming })
    const task = await c.producer("acme").create({ command: "render", webhook: hook.url })
    await c.tasks.claim("acme", ["render"], { workerId: "w", waitSeconds: 10 })
    await c.tasks.settleLease("acme", task.id, { workerId: "w" }, { type: "fail", error: "bad input" })
    const failed = await waitFor(async () => {
      const h = await c.log.readTask("acme", task.id)
      return h.events.find((e) => e.event.type === "WebhookFailed")?.event
    }, { what: "the refused delivery" })
    expect(failed).toMatchObject({ error: "blocked_destination", final: true })
    expect(hook.requests).toHaveLength(0)
    await broker.stop()
    await c.close()
    await hook.close()
  })

  it("resumes 100 failing webhooks after the broker is killed, delivering each exactly once when the receiver recovers", async () => {
    const naming = freshNaming()
    const nc = await nats.connect()
    await provision(nc, naming)
    let healthy = false
    const okPerTask = new Map<string, number>()
    const hook = await receiver(({ taskId }) => {
      if (!healthy) return 503
      okPerTask.set(taskId, (okPerTask.get(taskId) ?? 0) + 1)
      return 204
    })
    const env = {
      ...process.env,
      NATS_URL: nats.url(),
      CODEQ_STREAM_PREFIX: naming.streamPrefix,
      CODEQ_SUBJECT_ROOT: naming.subjectRoot,
      CODEQ_WEBHOOK_ALLOW_PRIVATE_NETWORKS: "true",
      CODEQ_WEBHOOK_BASE_DELAY_SECONDS: "0.3",
      CODEQ_WEBHOOK_MAX_DELAY_SECONDS: "1",
      CODEQ_WEBHOOK_MAX_ATTEMPTS: "1000",
      // Short timeouts keep the ack wait short: events in flight at the kill come back after it.
      CODEQ_WEBHOOK_CONNECT_TIMEOUT_MS: "1000",
      CODEQ_WEBHOOK_RESPONSE_TIMEOUT_MS: "2000",
      CODEQ_HTTP_PORT: String(await freePort()),
      CODEQ_HTTP_HOST: "127.0.0.1"
    }
    const children: Array<ChildProcess> = []
    const spawnBroker = (): ChildProcess => {
      const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", "serve"], { env, stdio: ["ignore", "ignore", "inherit"] })
      children.push(child)
      return child
    }
    let broker = spawnBroker()
    try {
      const c = await CodeqClient.connect({ connection: nc, naming })
      const created = await c.producer("acme").createMany(Array.from({ length: 100 }, () => ({ command: "render", webhook: hook.url })))
      const ids = created.map((r) => (r.ok ? r.task.id : ""))
      const worker = c.worker("acme", { workerId: "finisher" })
      const running = worker.run(["render"], () => "ok", { concurrency: 16 })
      const failedOnce = async () => {
        const histories = await Promise.all(ids.map((id) => c.log.readTask("acme", id)))
        return histories.every((h) => h.events.some((e) => e.event.type === "WebhookFailed")) || undefined
      }
      await waitFor(failedOnce, { timeoutMs: 60_000, what: "every webhook to have failed at least once" })
      broker.kill("SIGKILL")
      await new Promise((resolve) => broker.once("exit", resolve))
      healthy = true
      broker = spawnBroker()
      await waitFor(async () => {
        const histories = await Promise.all(ids.map((id) => c.log.readTask("acme", id)))
        return histories.every((h) => h.events.some((e) => e.event.type === "WebhookDelivered")) || undefined
      }, { timeoutMs: 60_000, what: "every webhook delivered after the restart" })
      broker.kill("SIGTERM")
      await new Promise((resolve) => broker.once("exit", resolve))
      await worker.stop()
      await running
      expect(okPerTask.size).toBe(100)
      expect([...okPerTask.values()].every((n) => n === 1)).toBe(true)
    } finally {
      // Never leave a broker behind, whatever failed.
      for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
      await hook.close()
    }
  }, 180_000)
  it("holds at most its concurrency of deliveries open at once, and takes the next job as soon as one of them is answered", async () => {
    const naming = freshNaming()
    // A receiver that holds every request until the broker's concurrency (64) are open at once,
    // then answers one at a time, each answer waiting for the request that takes its place: the
    // broker must notice a slot freed while every other one is still taken.
    const held: Array<ServerResponse> = []
    let open = 0
    let mostOpen = 0
    let answered = 0
    let filled = false
    const answerOne = () => {
      const res = held.shift()
      if (res === undefined) return
      open--
      answered++
      res.writeHead(200).end()
    }
    const server: Server = createServer((req, res) => {
      req.resume()
      req.on("end", () => {
        open++
        mostOpen = Math.max(mostOpen, open)
        held.push(res)
        if (open === WEBHOOK_CONCURRENCY) filled = true
        // Once filled, answer the oldest each time a new request arrives (the slot came back), and
        // everything once no more can come.
        if (filled) answerOne()
      })
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`
    // Held requests must not time out (that frees their slot while the receiver still holds them).
    const broker = await startBroker(brokerConfig(nats.url(), naming, { responseTimeoutMs: 120_000 }))
    const c = await CodeqClient.connect({ servers: nats.url(), naming })
    try {
      const created = await c.producer("acme").createMany(Array.from({ length: WEBHOOK_CONCURRENCY + 16 }, () => ({ command: "render", webhook: url })))
      const ids = created.map((r) => (r.ok ? r.task.id : ""))
      const worker = c.worker("acme", { workerId: "finisher" })
      const running = worker.run(["render"], () => "ok", { concurrency: 16 })
      await waitFor(() => filled || undefined, { timeoutMs: 30_000, what: "every slot's delivery open at once" })
      // 16 more jobs are left; each one reaches the receiver only if the broker took it after an
      // answer freed a slot. Then the ones still held are answered.
      await waitFor(() => answered >= 16 || undefined, { timeoutMs: 30_000, what: "the jobs beyond the first slots full, each in a freed slot" })
      while (held.length > 0) answerOne()
      await waitFor(async () => {
        const histories = await Promise.all(ids.map((id) => c.log.readTask("acme", id)))
        return histories.every((h) => h.events.some((e) => e.event.type === "WebhookDelivered")) || undefined
      }, { timeoutMs: 30_000, what: "every webhook delivered" })
      expect(mostOpen).toBe(WEBHOOK_CONCURRENCY)
      await worker.stop()
      await running
    } finally {
      for (const res of held.splice(0)) res.writeHead(200).end()
      await broker.stop()
      await c.close()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  })
  it("makes its outbox consumer again when it is deleted under a running broker, and delivers the webhooks", async () => {
    const naming = freshNaming()
    const hook = await receiver(() => 200)
    const broker = await startBroker(brokerConfig(nats.url(), naming))
    const c = await CodeqClient.connect({ servers: nats.url(), naming })
    const nc = await nats.connect()
    const jsm = await nc.jetstreamManager()
    expect(await jsm.consumers.delete(webhooksStream(naming), WEBHOOK_CONSUMER)).toBe(true)
    const task = await c.producer("acme").create({ command: "render", webhook: hook.url })
    const claimed = await c.tasks.claim("acme", ["render"], { workerId: "w", waitSeconds: 10 })
    expect(claimed?.task.id).toBe(task.id)
    await c.tasks.settleLease("acme", task.id, { workerId: "w" }, { type: "complete", result: {} })
    await waitFor(async () => (await c.log.readTask("acme", task.id)).events.some((e) => e.event.type === "WebhookDelivered"), { what: "the delivery" })
    expect(hook.requests.map((r) => JSON.parse(r.body) as { taskId: string }).map((b) => b.taskId)).toEqual([task.id])
    expect((await jsm.consumers.info(webhooksStream(naming), WEBHOOK_CONSUMER)).config.durable_name).toBe(WEBHOOK_CONSUMER)
    await broker.stop()
    await c.close()
    await hook.close()
  })
})
