/**
 * Synthetic but faithful event logs for the replay benchmark: tasks written the way the event
 * log writes them — the same headers (`Codeq-Event`, `traceparent`, `Codeq-Parent-Span`,
 * `Codeq-Span-Start`, `Codeq-Span-End`, `Codeq-Prev-Seq`, expected stream and last subject
 * sequence), each
 * transition parented on its create span, webhook outcomes on the terminal span — published
 * through the pipelined publisher, a few thousand tasks in flight, so a task's events are spread
 * through the log as they are in production. An audit of the result finds no problem.
 */
import { randomBytes, randomUUID } from "node:crypto"
import { headers, type NatsConnection } from "nats"
import { eventSubject, eventsStream, type Naming } from "../../streams/definitions.js"
import { PipelinedPublisher } from "../../src/eventlog/pipeline.js"
import { spanStartNow } from "../../src/tracing/codec.js"
import { HEADERS } from "../../src/tracing/conventions.js"

const encoder = new TextEncoder()

interface Step {
  readonly type: string
  readonly body: (taskId: string, at: string) => Record<string, unknown>
  /** Parented on the last terminal event's span (webhooks) rather than the create's. */
  readonly onTerminal?: boolean
}

const TENANTS = ["acme", "globex", "initech", "umbrella"]
const COMMANDS = ["render", "transcode", "thumbnail", "notify", "export"]


/** The life of one synthetic task: 3 events mostly, some with heartbeats, retries or webhooks. */
const lifeOf = (n: number, tenant: string): ReadonlyArray<Step> => {
  const command = COMMANDS[n % COMMANDS.length] ?? "render"
  const webhook = n % 10 === 0
  const worker = `worker-${n % 16}`
  const lease = (at: string) => new Date(Date.parse(at) + 300_000).toISOString()
  const create: Step = {
    type: "TaskCreated",
    body: (taskId, at) => ({
      v: 1,
      type: "TaskCreated",
      taskId,
      tenant,
      at,
      command,
      payload: { jobId: `job-${n}`, input: `s3://bucket/inputs/${n}.mp4`, options: { quality: "high", width: 1920, height: 1080 } },
      priority: n % 10,
      webhook: webhook ? `https://hooks.example.com/codeq/${tenant}` : undefined,
      maxAttempts: 5
    })
  }
  const claim = (attempt: number): Step => ({
    type: "TaskClaimed",
    body: (taskId, at) => ({ v: 1, type: "TaskClaimed", taskId, tenant, at, attempt, workerId: worker, leaseUntil: lease(at), leaseHandle: `$JS.ACK.CODEQ_CLAIMS.claim_${tenant}_${command}_5.1.${n}.${n}.1700000000000000000.0` })
  })
  const heartbeat: Step = { type: "TaskHeartbeat", body: (taskId, at) => ({ v: 1, type: "TaskHeartbeat", taskId, tenant, at, workerId: worker, leaseUntil: lease(at) }) }
  const nack: Step = { type: "TaskNacked", body: (taskId, at) => ({ v: 1, type: "TaskNacked", taskId, tenant, at, workerId: worker, reason: "upstream busy", delaySeconds: 5 }) }
  const complete: Step = { type: "TaskCompleted", body: (taskId, at) => ({ v: 1, type: "TaskCompleted", taskId, tenant, at, workerId: worker, result: { ok: true, output: `s3://bucket/outputs/${n}.mp4` } }) }
  const delivered: Step = { type: "WebhookDelivered", onTerminal: true, body: (taskId, at) => ({ v: 1, type: "WebhookDelivered", taskId, tenant, at, attempt: 1, statusCode: 200 }) }
  const steps: Array<Step> = [create, claim(1)]
  if (n % 7 === 0) steps.push(heartbeat)
  if (n % 20 === 3) steps.push(nack, claim(2))
  steps.push(complete)
  if (webhook) steps.push(delivered)
  return steps
}

interface Running {
  readonly taskId: string
  readonly tenant: string
  readonly steps: ReadonlyArray<Step>
  readonly traceId: string
  next: number
  version: number
  createSpan: string
  terminalSpan: string
}

/**
 * Random ids without a system call each: a pool of random bytes refilled when used up (ids need
 * only be unique here, not unpredictable).
 */
let pool = randomBytes(64 * 1024)
let at = 0
const hex = (bytes: number): string => {
  if (at + bytes > pool.length) {
    pool = randomBytes(64 * 1024)
    at = 0
  }
  at += bytes
  return pool.toString("hex", at - bytes, at)
}

export interface FillReport {
  readonly events: number
  readonly tasks: number
  readonly elapsedMs: number
}

/**
 * Appends about `events` events (whole tasks) to the naming's event stream, `window` tasks at a
 * time, each event under the expected last subject sequence of its task.
 */
export const fillEventLog = async (nc: NatsConnection, naming: Naming, events: number, onProgress?: (done: number) => void, window = 4_000): Promise<FillReport> => {
  const publisher = new PipelinedPublisher(nc, { maxInFlight: 8_192, ackTimeoutMs: 30_000 })
  const stream = eventsStream(naming)
  const started = Date.now()
  let written = 0
  let tasks = 0
  try {
    while (written < events) {
      const round: Array<Running> = []
      let planned = written
      for (let i = 0; i < window && planned < events; i++) {
        const n = tasks++
        const tenant = TENANTS[n % TENANTS.length] ?? "acme"
        const steps = lifeOf(n, tenant)
        planned += steps.length
        round.push({ taskId: randomUUID(), tenant, steps, traceId: hex(16), next: 0, version: 0, createSpan: "", terminalSpan: "" })
      }
      // Phase by phase: every task's next event, acked, before the following one.
      for (let live = round; live.length > 0; live = live.filter((t) => t.next < t.steps.length)) {
        await Promise.all(
          live.map(async (task) => {
            const step = task.steps[task.next] as Step
            const spanId = hex(8)
            const h = headers()
            h.set(HEADERS.event, step.type)
            h.set(HEADERS.traceparent, `00-${task.traceId}-${spanId}-01`)
            if (task.next > 0) h.set(HEADERS.parentSpan, step.onTerminal === true ? task.terminalSpan : task.createSpan)
            h.set(HEADERS.spanStart, spanStartNow().nanos)
            h.set(HEADERS.spanEnd, spanStartNow().nanos)
            h.set("Nats-Expected-Stream", stream)
            h.set("Nats-Expected-Last-Subject-Sequence", String(task.version))
            h.set(HEADERS.prevSeq, String(task.version))
            const body = encoder.encode(JSON.stringify(step.body(task.taskId, new Date().toISOString())))
            const result = await publisher.publish(eventSubject(naming, task.tenant, task.taskId), body, h, task.version)
            if (!result.ok) throw result.error
            if (task.next === 0) task.createSpan = spanId
            if (step.type === "TaskCompleted") task.terminalSpan = spanId
            task.version = result.seq
            task.next++
            written++
          })
        )
        onProgress?.(written)
      }
    }
  } finally {
    publisher.close()
  }
  return { events: written, tasks, elapsedMs: Date.now() - started }
}
