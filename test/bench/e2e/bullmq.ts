/**
 * Child process: the peer to beat, BullMQ on the local Redis, doing the same work as codeq at its
 * best setting. One script plays either side (`role`):
 *
 * - producer: `queue.addBulk` of `batch` jobs (same 200-byte JSON payload), one batch after
 *   another, as codeq's producer does with `createMany`;
 * - worker: `new Worker(queue, async () => null, { concurrency })`, started on `go`; a completion
 *   is counted on the worker's `completed` event (the job is stored as completed in Redis, the
 *   counterpart of codeq's TaskCompleted). Completed jobs are kept (BullMQ's default), as codeq
 *   keeps every task's history in its log.
 *
 * The orchestrator's side (`runBullmq`) names a fresh queue per run and obliterates it after.
 */
import { randomBytes } from "node:crypto"
import { join } from "node:path"
import { Queue, Worker } from "bullmq"
import { Redis } from "ioredis"
import type { RunContext } from "./codeqRun.js"
import { readCpu, redisCpuSeconds, type CpuPerTask, type CpuReading } from "./cpu.js"
import { ErrorLog, makePayload, runChild, type ChildControl, type LoadConfig, type ProducerResult, type WorkerResult } from "./ipc.js"
import { driveLoad, type ExactlyOnce } from "./load.js"
import { ProcessGroup } from "./processes.js"
import { COMMAND, TENANT } from "./stack.js"

const connectionOf = (config: LoadConfig) => ({ host: config.redis.host, port: config.redis.port, maxRetriesPerRequest: null })

const producer = async (config: LoadConfig) => {
  const queue = new Queue(config.queue, { connection: connectionOf(config) })
  await queue.waitUntilReady()
  const data = makePayload(config.payloadBytes)
  return async (control: ChildControl): Promise<ProducerResult> => {
    await control.go
    const ids: Array<string> = []
    const errors = new ErrorLog()
    let lastAt = 0
    const firstAt = Date.now()
    for (let sent = 0; sent < config.tasks && !control.isStopped(); sent += config.batch) {
      const n = Math.min(config.batch, config.tasks - sent)
      try {
        const jobs = await queue.addBulk(Array.from({ length: n }, () => ({ name: config.command, data })))
        for (const job of jobs) if (job.id !== undefined) ids.push(job.id)
        if (jobs.length < n) errors.add(new Error(`addBulk answered ${jobs.length} of ${n} jobs`), n - jobs.length)
      } catch (error) {
        errors.add(error, n)
      }
      lastAt = Date.now()
      control.progress(ids.length, lastAt)
    }
    await queue.close()
    return { kind: "producer", ids, firstAt, lastAt, failed: errors.count, errors: errors.messages }
  }
}

const worker = async (config: LoadConfig) => {
  const completed: Array<string> = []
  const errors = new ErrorLog()
  let lastAt = 0
  let control: ChildControl | undefined
  const bull = new Worker(config.queue, async () => null, { connection: connectionOf(config), concurrency: config.concurrency, autorun: false })
  bull.on("completed", (job) => {
    completed.push(job.id ?? "?")
    lastAt = Date.now()
    control?.progress(completed.length, lastAt)
  })
  bull.on("failed", (_job, error) => errors.add(error))
  bull.on("error", (error) => errors.add(error))
  await bull.waitUntilReady()
  return async (given: ChildControl): Promise<WorkerResult> => {
    control = given
    await given.go
    const running = bull.run()
    await given.stopped
    await bull.close()
    await running.catch((error: unknown) => errors.add(error))
    return { kind: "worker", completed, lastAt, failed: errors.count, errors: errors.messages }
  }
}

runChild(import.meta.url, async (config: LoadConfig) => (config.role === "producer" ? producer(config) : worker(config)))

export interface BullmqRunResult {
  readonly system: "bullmq"
  readonly variant: "bullmq"
  readonly round: number
  readonly tasks: number
  readonly clean: boolean
  readonly check: ExactlyOnce
  readonly stalled: boolean
  readonly firstCreateAt: number
  /** The last `completed` event any worker saw. */
  readonly lastCompletionAt: number
  readonly elapsedMs: number
  readonly tasksPerSec: number
  /** CPU of Redis (its own INFO cpu), the producer and each worker, first create to last completion. */
  readonly cpu: CpuPerTask | undefined
  readonly errors: ReadonlyArray<string>
}

/** Deletes a run's queue and everything in it. */
const obliterate = async (name: string, redis: LoadConfig["redis"]): Promise<void> => {
  const queue = new Queue(name, { connection: { ...redis, maxRetriesPerRequest: null } })
  try {
    await queue.obliterate({ force: true })
  } finally {
    await queue.close()
  }
}

/** One BullMQ run: a producer process and W worker processes on a fresh queue. */
export const runBullmq = async (round: number, ctx: RunContext): Promise<BullmqRunResult> => {
  const { options } = ctx
  const label = `r${round}-bullmq`
  const queue = `codeq-e2e-${randomBytes(4).toString("hex")}`
  const group = new ProcessGroup()
  const redis = new Redis({ ...options.redis, maxRetriesPerRequest: 1, lazyConnect: true })
  const config = (role: LoadConfig["role"], connectionName: string): LoadConfig => ({
    via: "sdk",
    role,
    connectionName,
    tenant: TENANT,
    command: COMMAND,
    payloadBytes: options.payload,
    webhook: "",
    tasks: options.tasks,
    batch: options.batch,
    inflight: 1,
    rate: 0,
    concurrency: options.concurrency,
    natsUrl: "",
    naming: { streamPrefix: "", subjectRoot: "" },
    tracing: undefined,
    httpUrl: "",
    token: "",
    queue,
    redis: options.redis
  })
  try {
    const workers = Array.from({ length: options.workers }, (_, i) =>
      group.fork("./bullmq.ts", config("worker", `worker-${i + 1}`), { name: `bullmq-worker-${i + 1}`, logFile: join(ctx.logDir, `${label}-worker-${i + 1}.log`) })
    )
    const producer = group.fork("./bullmq.ts", config("producer", "producer"), { name: "bullmq-producer", logFile: join(ctx.logDir, `${label}-producer.log`) })
    await Promise.all([producer, ...workers].map((proc) => proc.waitFor("ready", 60_000)))
    const pids = [{ name: "producer", pid: producer.pid }, ...workers.map((worker) => ({ name: worker.name.replace(/^bullmq-/, ""), pid: worker.pid }))]
    const redisCpu = async (): Promise<CpuReading> => {
      const seconds = redisCpuSeconds(await redis.info("cpu"))
      return seconds === undefined ? {} : { redis: seconds }
    }
    const outcome = await driveLoad(producer, workers, { expected: options.tasks, stallMs: options.stallTimeoutS * 1000, readCpu: () => readCpu(pids, redisCpu()) })
    const firstCreateAt = outcome.producer?.firstAt ?? 0
    const elapsedMs = Math.max(1, outcome.workersLastAt - firstCreateAt)
    return {
      system: "bullmq",
      variant: "bullmq",
      round,
      tasks: options.tasks,
      clean: outcome.check.clean && !outcome.stalled,
      check: outcome.check,
      stalled: outcome.stalled,
      firstCreateAt,
      lastCompletionAt: outcome.workersLastAt,
      elapsedMs,
      tasksPerSec: ((outcome.check.created - outcome.check.lost) * 1000) / elapsedMs,
      cpu: outcome.cpu,
      errors: outcome.errors
    }
  } finally {
    redis.disconnect()
    await group.killAll()
    await obliterate(queue, options.redis).catch((error: unknown) => console.error(`bullmq: could not obliterate ${queue}: ${String(error)}`))
  }
}
