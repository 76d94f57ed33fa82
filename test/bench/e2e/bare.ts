/**
 * The design's operations from bare clients: the server operations a task costs under DESIGN
 * §2–§4, made by plain nats.js clients with nothing of codeq in them, in the same run as codeq and
 * BullMQ. It says what the operations themselves cost on this machine — the server's CPU they
 * take, and what the official client spends to send and read them — apart from codeq's logic.
 *
 * Three processes against codeq's own streams and task-state bucket (provisioned by a `codeq serve`
 * that is stopped before the run), doing per task what codeq's processes do at the server:
 *
 * - producer: the TaskCreated appended to the task's subject, expecting sequence 0, its ack read
 *   back; batches of `batch`, one after another, as the SDK producer's `createMany`;
 * - relay (the broker's part): every event read from one pull consumer without acks, as the
 *   projections' feed; a create becomes a claim message (it carries the create and its sequence)
 *   published without an answer, and a completion the task's document put into the bucket without
 *   an answer; one acknowledged barrier per 512 of them, as the dispatcher and the document
 *   writer confirm theirs;
 * - worker: claim messages pulled from the work queue, `concurrency` at once; per claim the
 *   TaskClaimed and then the TaskCompleted appended at their expected sequences, each ack read,
 *   then the claim message acked.
 *
 * Every append carries the `Codeq-Event` and `traceparent` headers. Bodies are templates with the
 * task's id spliced in. No failure handling, no decoding beyond a header, no tracing, no read model
 * beyond the put, no priorities or delays: not a broker, only what one has to ask of the server,
 * through nats.js's own `publish` and `consume` (codeq's processes write their publishes as frames
 * of their own, src/eventlog/frames.ts, and read with their own decoders: not done here).
 */
import { randomBytes, randomUUID } from "node:crypto"
import { join } from "node:path"
import { AckPolicy, connect, createInbox, DeliverPolicy, headers, type JsMsg, type MsgHdrs, type NatsConnection } from "nats"
import { claimBarrierSubject, claimsStream, claimSubject, claimSubjects, eventsStream, eventSubject, eventSubjects, taskStateBucket, taskStateKey, type Naming } from "../../../streams/definitions.js"
import { BROKER_CONNECTION, type RunContext } from "./codeqRun.js"
import { readCpu, type CpuPerTask } from "./cpu.js"
import { ErrorLog, makePayload, runChild, type ChildControl, type ProducerResult, type WorkerResult } from "./ipc.js"
import { HOPS_CONNECTION, watchHops, type HopReport, type HopWatch } from "./hops.js"
import { readLogLatency, type LogLatency } from "./latency.js"
import { driveLoad, type ExactlyOnce } from "./load.js"
import { serverSnapshot, trafficPerTask, type Traffic } from "./monitor.js"
import { ProcessGroup } from "./processes.js"
import { COMMAND, startCodeqStack, startPrivateNats, TENANT, type PrivateNats } from "./stack.js"

const EVENT_HEADER = "Codeq-Event"
const TASK_HEADER = "Bare-Task"
const SEQ_HEADER = "Bare-Seq"
const EXPECTED = "Nats-Expected-Last-Subject-Sequence"
/** Unanswered publishes of the relay between two acknowledged barriers. */
const BARRIER_EVERY = 512
const FEED_BATCH = 1_000
/** The paced producer's tick, as the codeq producer's (producer.ts). */
const PACE_MS = 10

export type BareRole = "producer" | "relay" | "worker"

interface BareConfig {
  readonly role: BareRole
  readonly natsUrl: string
  readonly naming: Naming
  readonly tasks: number
  readonly batch: number
  readonly payloadBytes: number
  readonly concurrency: number
  /** Creates per second, in batches every 10 ms (the latency run); 0 creates as fast as possible. */
  readonly rate: number
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const hex = (bytes: number) => randomBytes(bytes).toString("hex")

/** A W3C traceparent with fresh ids, as every event carries one. */
const traceparent = () => `00-${hex(16)}-${hex(8)}-01`

const eventHeaders = (type: string, expectedSeq: number): MsgHdrs => {
  const h = headers()
  h.set(EVENT_HEADER, type)
  h.set("traceparent", traceparent())
  h.set(EXPECTED, String(expectedSeq))
  return h
}

/**
 * Acked publishes under one inbox subscription, matched back by a counter (what nats.js's
 * `request` would do with a subscription per call). Resolves with the stored sequence.
 */
class Acks {
  private readonly inbox = createInbox()
  private readonly waiting = new Map<number, { resolve: (seq: number) => void; reject: (error: Error) => void }>()
  private next = 0

  constructor(private readonly nc: NatsConnection) {
    nc.subscribe(`${this.inbox}.*`, {
      callback: (error, msg) => {
        if (error !== null) return
        const id = Number(msg.subject.slice(this.inbox.length + 1))
        const waiter = this.waiting.get(id)
        if (waiter === undefined) return
        this.waiting.delete(id)
        const ack = JSON.parse(decoder.decode(msg.data)) as { seq?: number; error?: { description?: string } }
        if (ack.seq !== undefined) waiter.resolve(ack.seq)
        else waiter.reject(new Error(ack.error?.description ?? "publish refused"))
      }
    })
  }

  publish(subject: string, body: Uint8Array, h: MsgHdrs): Promise<number> {
    const id = this.next++
    return new Promise<number>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject })
      this.nc.publish(subject, body, { reply: `${this.inbox}.${id}`, headers: h })
    })
  }

  /** Fails every publish still waiting (the run is over). */
  abandon(): void {
    for (const waiter of this.waiting.values()) waiter.reject(new Error("no ack before the run ended"))
    this.waiting.clear()
  }
}

const createdBody = (id: string, payload: string) =>
  encoder.encode(
    `{"type":"TaskCreated","tenant":"${TENANT}","taskId":"${id}","command":"${COMMAND}","payload":${payload},"priority":0,"maxAttempts":5,"at":"${new Date().toISOString()}"}`
  )

const producer = async (config: BareConfig) => {
  const nc = await connect({ servers: config.natsUrl, name: "bare-producer", noAsyncTraces: true })
  const acks = new Acks(nc)
  const payload = JSON.stringify(makePayload(config.payloadBytes))
  return async (control: ChildControl): Promise<ProducerResult> => {
    await control.go
    const ids: Array<string> = []
    const errors = new ErrorLog()
    const firstAt = Date.now()
    let lastAt = firstAt
    const create = async (n: number) => {
      const batch = Array.from({ length: n }, () => {
        const id = randomUUID()
        return acks.publish(eventSubject(config.naming, TENANT, id), createdBody(id, payload), eventHeaders("TaskCreated", 0)).then(
          () => void ids.push(id),
          (error: unknown) => errors.add(error)
        )
      })
      await Promise.all(batch)
      lastAt = Date.now()
      control.progress(ids.length, lastAt)
    }
    if (config.rate > 0) {
      // Paced as the codeq producer's latency run: what is due every 10 ms, not waiting for acks.
      const pending = new Set<Promise<void>>()
      for (let sent = 0; sent < config.tasks && !control.isStopped(); await new Promise((resolve) => setTimeout(resolve, PACE_MS))) {
        const due = Math.min(config.tasks, Math.floor(((Date.now() - firstAt) / 1000) * config.rate))
        for (; sent < due; ) {
          const n = Math.min(config.batch, due - sent)
          sent += n
          const call: Promise<void> = create(n).finally(() => pending.delete(call))
          pending.add(call)
        }
      }
      await Promise.all(pending)
    } else
      for (let sent = 0; sent < config.tasks && !control.isStopped(); ) {
        const n = Math.min(config.batch, config.tasks - sent)
        sent += n
        await create(n)
      }
    acks.abandon()
    await nc.drain()
    return { kind: "producer", ids, firstAt, lastAt, failed: errors.count, errors: errors.messages }
  }
}

/** The part of a task's subject after the tenant: its id. */
const taskIdOf = (subject: string) => subject.slice(subject.lastIndexOf(".") + 1)

const relay = async (config: BareConfig) => {
  const nc = await connect({ servers: config.natsUrl, name: "bare-relay", noAsyncTraces: true })
  const jsm = await nc.jetstreamManager()
  const durable = "bare-feed"
  await jsm.consumers.add(eventsStream(config.naming), { durable_name: durable, filter_subject: eventSubjects(config.naming, TENANT), ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.All })
  const consumer = await nc.jetstream().consumers.get(eventsStream(config.naming), durable)
  const acks = new Acks(nc)
  const lane = claimSubject(config.naming, TENANT, COMMAND, 0)
  const bucketPrefix = `$KV.${taskStateBucket(config.naming)}.`
  const barrier = claimBarrierSubject(config.naming)
  return async (control: ChildControl): Promise<WorkerResult> => {
    await control.go
    const errors = new ErrorLog()
    let unanswered = 0
    let documents = 0
    const confirm = () => {
      unanswered = 0
      // Refused by design (the barrier subject never holds a message at that sequence): its answer
      // says the server has handled everything published before it.
      acks.publish(barrier, new Uint8Array(0), eventHeaders("Barrier", 1)).catch(() => undefined)
    }
    const messages = await consumer.consume({ max_messages: FEED_BATCH })
    void control.stopped.then(() => messages.stop())
    for await (const m of messages) {
      const type = m.headers?.get(EVENT_HEADER)
      const id = taskIdOf(m.subject)
      if (type === "TaskCreated") {
        const h = headers()
        h.set("Nats-Msg-Id", `c${m.seq}`)
        h.set(TASK_HEADER, id)
        h.set(SEQ_HEADER, String(m.seq))
        nc.publish(lane, m.data, { headers: h })
      } else if (type === "TaskCompleted") {
        nc.publish(`${bucketPrefix}${taskStateKey(TENANT, id)}`, encoder.encode(`{"id":"${id}","status":"COMPLETED","version":${m.seq}}`))
        documents++
        control.progress(documents, Date.now())
      } else continue
      if (++unanswered >= BARRIER_EVERY) confirm()
    }
    acks.abandon()
    await nc.drain()
    // The relay's count is not a worker's: it completes nothing (the orchestrator reads only its CPU).
    return { kind: "worker", completed: [], lastAt: Date.now(), failed: errors.count, errors: errors.messages }
  }
}

const worker = async (config: BareConfig) => {
  const nc = await connect({ servers: config.natsUrl, name: "bare-worker", noAsyncTraces: true })
  const jsm = await nc.jetstreamManager()
  const durable = "bare-worker"
  await jsm.consumers.add(claimsStream(config.naming), { durable_name: durable, filter_subject: claimSubjects(config.naming, TENANT, COMMAND), ack_policy: AckPolicy.Explicit, max_ack_pending: -1 })
  const consumer = await nc.jetstream().consumers.get(claimsStream(config.naming), durable)
  const acks = new Acks(nc)
  const result = encoder.encode(`{"ok":true}`)
  return async (control: ChildControl): Promise<WorkerResult> => {
    await control.go
    const completed: Array<string> = []
    const errors = new ErrorLog()
    let lastAt = 0
    let running = 0
    let slot: (() => void) | undefined
    const work = async (m: JsMsg) => {
      const id = m.headers?.get(TASK_HEADER) ?? ""
      const subject = eventSubject(config.naming, TENANT, id)
      const createdSeq = Number(m.headers?.get(SEQ_HEADER))
      const claimedSeq = await acks.publish(subject, encoder.encode(`{"type":"TaskClaimed","taskId":"${id}","workerId":"bare","at":"${new Date().toISOString()}"}`), eventHeaders("TaskClaimed", createdSeq))
      await acks.publish(subject, encoder.encode(`{"type":"TaskCompleted","taskId":"${id}","result":${decoder.decode(result)},"at":"${new Date().toISOString()}"}`), eventHeaders("TaskCompleted", claimedSeq))
      m.ack()
      completed.push(id)
      lastAt = Date.now()
      control.progress(completed.length, lastAt)
    }
    const messages = await consumer.consume({ max_messages: config.concurrency })
    void control.stopped.then(() => messages.stop())
    for await (const m of messages) {
      while (running >= config.concurrency) await new Promise<void>((resolve) => (slot = resolve))
      running++
      void work(m)
        .catch((error: unknown) => errors.add(error))
        .finally(() => {
          running--
          const wake = slot
          slot = undefined
          wake?.()
        })
    }
    acks.abandon()
    await nc.drain()
    return { kind: "worker", completed, lastAt, failed: errors.count, errors: errors.messages }
  }
}

runChild(import.meta.url, async (config: BareConfig) => (config.role === "producer" ? producer(config) : config.role === "relay" ? relay(config) : worker(config)))

export interface BareRunResult {
  readonly system: "bare"
  readonly variant: "bare" | "bare-latency"
  readonly round: number
  readonly tasks: number
  /** Creates per second of a paced run (`bare-latency`); 0 as fast as possible. */
  readonly rate: number
  /** A paced run's latency from the log's timestamps, as codeq's latency run reads it (latency.ts). */
  readonly latency: LogLatency | undefined
  /** With `--hops`, a paced run's create→claimed time by hop (hops.ts), as codeq's latency run has it. */
  readonly hops: HopReport | undefined
  readonly clean: boolean
  readonly check: ExactlyOnce
  readonly stalled: boolean
  readonly elapsedMs: number
  readonly tasksPerSec: number
  readonly traffic: Traffic
  /** CPU of the nats-server, the relay, the producer and the worker, first create to last completion. */
  readonly cpu: CpuPerTask | undefined
  readonly errors: ReadonlyArray<string>
}

/**
 * One bare run: a private nats-server provisioned by `codeq serve` (stopped before the run), then
 * the three bare clients; at `rate` > 0, `--latency-tasks` tasks paced as codeq's latency run, and
 * the latency read back from the log.
 */
export const runBare = async (round: number, ctx: RunContext, rate = 0): Promise<BareRunResult> => {
  const { options } = ctx
  const variant = rate > 0 ? "bare-latency" : "bare"
  const label = `r${round}-${variant}`
  const tasks = rate > 0 ? options.latencyTasks : options.tasks
  const group = new ProcessGroup()
  let nats: PrivateNats | undefined
  let watch: HopWatch | undefined
  try {
    const privateNats = await startPrivateNats()
    nats = privateNats
    // codeq's streams and bucket exactly as the broker makes them; the broker itself takes no part.
    const stack = await startCodeqStack(privateNats, { group, logDir: ctx.logDir, label, workers: 1, otlpEndpoint: undefined })
    await stack.broker.kill(8_000)
    const config = (role: BareRole): BareConfig => ({
      role,
      natsUrl: privateNats.url,
      naming: stack.naming,
      tasks,
      // Paced: the batches of codeq's latency run (codeqRun.ts), at most a hundredth of a second's tasks.
      batch: rate > 0 ? Math.max(1, Math.min(options.batch, Math.ceil(rate / 100))) : options.batch,
      payloadBytes: options.payload,
      concurrency: options.concurrency,
      rate
    })
    const start = (role: BareRole) => group.fork("./bare.ts", config(role), { name: `bare-${role}`, logFile: join(ctx.logDir, `${label}-${role}.log`) })
    const relayProc = start("relay")
    const workerProc = start("worker")
    const producerProc = start("producer")
    await Promise.all([relayProc, workerProc, producerProc].map((proc) => proc.waitFor("ready", 60_000)))
    relayProc.send({ type: "go" })
    const pids = [
      { name: "nats-server", pid: privateNats.server.pid },
      { name: "relay", pid: relayProc.pid },
      { name: "producer", pid: producerProc.pid },
      { name: "worker", pid: workerProc.pid }
    ]
    watch = rate > 0 && options.hops ? await watchHops(privateNats.url, stack.naming.subjectRoot) : undefined
    const before = await serverSnapshot(privateNats.monitorUrl)
    const outcome = await driveLoad(producerProc, [workerProc], { expected: tasks, stallMs: options.stallTimeoutS * 1000, watch: [relayProc], readCpu: () => readCpu(pids) })
    const after = await serverSnapshot(privateNats.monitorUrl)
    relayProc.send({ type: "stop" })
    const hops = await watch?.finish(options.latencyWarmupS * 1000)
    watch = undefined
    let latency: LogLatency | undefined
    if (rate > 0) {
      const admin = await connect({ servers: privateNats.url, name: "bench-admin", noAsyncTraces: true })
      try {
        latency = await readLogLatency(admin, eventsStream(stack.naming), stack.naming.subjectRoot, options.latencyWarmupS * 1000)
      } finally {
        await admin.close()
      }
    }
    const firstCreateAt = outcome.producer?.firstAt ?? 0
    const elapsedMs = Math.max(1, outcome.workersLastAt - firstCreateAt)
    const done = outcome.check.created - outcome.check.lost
    return {
      system: "bare",
      variant,
      round,
      tasks,
      rate,
      latency,
      hops,
      clean: outcome.check.clean && !outcome.stalled,
      check: outcome.check,
      stalled: outcome.stalled,
      elapsedMs,
      tasksPerSec: (done * 1000) / elapsedMs,
      // The provisioning broker's connection, closed before the run, is still listed (state=all).
      traffic: trafficPerTask(before, after, Math.max(1, done), [BROKER_CONNECTION, HOPS_CONNECTION]),
      cpu: outcome.cpu,
      errors: outcome.errors
    }
  } finally {
    await watch?.finish(0).catch(() => undefined)
    await group.killAll()
    await nats?.stop()
  }
}
