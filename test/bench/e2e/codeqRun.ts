/**
 * One codeq run, end to end from the outside: a private nats-server, `codeq serve`, a producer
 * process and W worker processes (SDK or HTTP), the server's counters before and after, the
 * broker's RSS, the catch-up of its projections, and — for the latency run — the log read back.
 *
 * The clock: the run starts at the producer's first create call and ends at the last event the
 * log stored (the last TaskCompleted; read from the events stream's state once the workers have
 * stopped), both wall time on one machine. Catch-up is measured from that same end.
 */
import { join } from "node:path"
import { connect } from "nats"
import { eventsStream } from "../../../streams/definitions.js"
import { readCpu, type CpuPerTask } from "./cpu.js"
import type { LoadConfig } from "./ipc.js"
import { lastStoredAt, readLogLatency, type LogLatency } from "./latency.js"
import { HOPS_CONNECTION, watchHops, type HopReport, type HopWatch } from "./hops.js"
import { driveLoad, type ExactlyOnce } from "./load.js"
import { delta, projectionLag, scaled, serverSnapshot, trafficPerTask, waitForCatchUp, type CatchUp, type Counters, type Traffic } from "./monitor.js"
import type { E2eOptions, VariantName } from "./options.js"
import { ProcessGroup, RssSampler } from "./processes.js"
import { startWebhookReceiver } from "./webhookReceiver.js"
import { COMMAND, startCodeqStack, startPrivateNats, TENANT, type PrivateNats } from "./stack.js"

/** The name `codeq serve` gives its NATS connection (src/broker.ts). */
export const BROKER_CONNECTION = "codeq-broker"
const SCRAPE_SAMPLES = 3
/** The bench's own connections that are open while a run is measured: left out of its counters per task. */
const OWN_CONNECTIONS = [HOPS_CONNECTION]

export interface CodeqSpec {
  readonly variant: VariantName
  readonly round: number
  readonly via: "sdk" | "http"
  readonly tasks: number
  /** Fixed creation rate (tasks/s), 0 for as fast as possible. */
  readonly rate: number
  readonly tracing: boolean
  readonly readLatency: boolean
  /** Every task carries a webhook to a loopback receiver; the run waits for every delivery. */
  readonly webhooks: boolean
}

/** The webhooks run: deliveries counted by the receiver, from the first create to the last delivery. */
export interface WebhookOutcome {
  readonly delivered: number
  readonly duplicates: number
  readonly rejected: number
  readonly allDelivered: boolean
  readonly lastDeliveryAt: number
  /** Tasks per second from the first create to the last delivery. */
  readonly tasksPerSec: number
  /** From the workers' last completion to the last delivery. */
  readonly delayMs: number
  /** Server traffic from the first create to the last delivery. */
  readonly traffic: Traffic
}

export interface CodeqRunResult {
  readonly system: "codeq"
  readonly variant: VariantName
  readonly round: number
  readonly via: "sdk" | "http"
  readonly tasks: number
  readonly rate: number
  readonly tracing: boolean
  readonly clean: boolean
  readonly check: ExactlyOnce
  readonly stalled: boolean
  readonly firstCreateAt: number
  readonly lastCompletionAt: number
  readonly lastCompletionFrom: "log" | "workers"
  readonly elapsedMs: number
  readonly tasksPerSec: number
  readonly catchUp: CatchUp & { readonly caughtUp: boolean; readonly delayMs: number | undefined; readonly tasksPerSec: number | undefined; readonly timeoutS: number }
  readonly traffic: { readonly atCompletion: Traffic; readonly withCatchUp: Traffic; readonly scrapeCost: Counters }
  readonly rss:
    | {
        readonly startBytes: number
        readonly peakBytes: number
        readonly endBytes: number
        readonly afterCatchUpBytes: number | undefined
        /** Peaks of the run's first and second half (by time, from the first create to the last completion): growth with the tasks done, apart from the working set. */
        readonly halves: { readonly firstPeakBytes: number; readonly secondPeakBytes: number } | undefined
      }
    | undefined
  readonly latency: LogLatency | undefined
  /** With `--hops`, a latency run's create→claimed time by hop (hops.ts). */
  readonly hops: HopReport | undefined
  readonly spans: { readonly received: number; readonly perTask: number } | undefined
  readonly webhooks: WebhookOutcome | undefined
  /** CPU of the nats-server, the broker, the producer and each worker, first create to last completion. */
  readonly cpu: CpuPerTask | undefined
  readonly errors: ReadonlyArray<string>
}

export interface RunContext {
  readonly options: E2eOptions
  readonly logDir: string
}

const loadConfig = (options: E2eOptions, spec: CodeqSpec, nats: PrivateNats, extra: Partial<LoadConfig>): LoadConfig => ({
  via: spec.via,
  role: "worker",
  connectionName: "worker",
  tenant: TENANT,
  command: COMMAND,
  payloadBytes: options.payload,
  webhook: "",
  tasks: spec.tasks,
  batch: spec.rate > 0 ? Math.max(1, Math.min(options.batch, Math.ceil(spec.rate / 100))) : options.batch,
  inflight: options.httpInflight,
  rate: spec.rate,
  concurrency: spec.via === "sdk" ? options.concurrency : options.httpClaimers,
  natsUrl: nats.url,
  naming: { streamPrefix: "", subjectRoot: "" },
  tracing: undefined,
  httpUrl: "",
  token: "",
  queue: "",
  redis: options.redis,
  ...extra
})

export const runCodeq = async (spec: CodeqSpec, ctx: RunContext): Promise<CodeqRunResult> => {
  const { options } = ctx
  const label = `r${spec.round}-${spec.variant}`
  const group = new ProcessGroup()
  const receiver = spec.tracing ? await (await import("../../support/otlpReceiver.js")).startOtlpReceiver({ keeps: "count" }) : undefined
  const hooks = spec.webhooks ? await startWebhookReceiver() : undefined
  let nats: PrivateNats | undefined
  let sampler: RssSampler | undefined
  let watch: HopWatch | undefined
  const scrapes: { scrapes: number; cancelled?: boolean } = { scrapes: 0 }
  try {
    const privateNats = await startPrivateNats()
    nats = privateNats
    const stack = await startCodeqStack(privateNats, { group, logDir: ctx.logDir, label, workers: options.workers, otlpEndpoint: receiver?.endpoint, loopbackWebhooks: hooks !== undefined })
    sampler = new RssSampler(stack.broker.pid)
    const common = { naming: stack.naming, httpUrl: stack.httpUrl, tracing: receiver === undefined ? undefined : { endpoint: receiver.endpoint } }
    const workers = stack.workerTokens.map((token, i) =>
      group.fork("./worker.ts", loadConfig(options, spec, privateNats, { ...common, role: "worker", connectionName: `worker-${i + 1}`, token }), {
        name: `worker-${i + 1}`,
        logFile: join(ctx.logDir, `${label}-worker-${i + 1}.log`)
      })
    )
    const producer = group.fork("./producer.ts", loadConfig(options, spec, privateNats, { ...common, role: "producer", connectionName: "producer", token: stack.producerToken, webhook: hooks?.url ?? "" }), {
      name: "producer",
      logFile: join(ctx.logDir, `${label}-producer.log`)
    })
    await Promise.all([producer, ...workers].map((proc) => proc.waitFor("ready", 60_000)))

    // What one /metrics scrape costs the broker at the server, measured on the idle broker.
    const idle = await serverSnapshot(privateNats.monitorUrl)
    for (let i = 0; i < SCRAPE_SAMPLES; i++) await projectionLag(stack.httpUrl)
    const scrapeCost = scaled(delta(idle, await serverSnapshot(privateNats.monitorUrl)).byName.get(BROKER_CONNECTION) ?? { inMsgs: 0, outMsgs: 0, inBytes: 0, outBytes: 0 }, 1 / SCRAPE_SAMPLES)

    const pids = [
      { name: "nats-server", pid: privateNats.server.pid },
      { name: "broker", pid: stack.broker.pid },
      { name: "producer", pid: producer.pid },
      ...workers.map((worker) => ({ name: worker.name, pid: worker.pid }))
    ]
    watch = spec.readLatency && options.hops ? await watchHops(privateNats.url, stack.naming.subjectRoot) : undefined
    const before = await serverSnapshot(privateNats.monitorUrl)
    const rssStart = (await sampler.sample()) ?? 0
    let catchUp: Promise<CatchUp> | undefined
    const outcome = await driveLoad(producer, workers, {
      expected: spec.tasks,
      stallMs: options.stallTimeoutS * 1000,
      watch: [stack.broker],
      onAllDone: () => (catchUp = waitForCatchUp(stack.httpUrl, options.catchupPollMs, Date.now() + options.catchupTimeoutS * 1000, scrapes)),
      readCpu: () => readCpu(pids)
    })
    const scrapesAtCompletion = scrapes.scrapes
    const atCompletion = await serverSnapshot(privateNats.monitorUrl)
    const rssEnd = (await sampler.sample()) ?? 0
    const rssPeak = sampler.peak(before.at) ?? rssEnd
    const midRun = before.at + (Date.now() - before.at) / 2
    const firstHalfPeak = sampler.peak(before.at, midRun)
    const secondHalfPeak = sampler.peak(midRun)
    const settled = await (catchUp ?? waitForCatchUp(stack.httpUrl, options.catchupPollMs, Date.now(), scrapes))
    const afterCatchUp = await serverSnapshot(privateNats.monitorUrl)
    const rssAfter = await sampler.sample()
    sampler.stop()
    const tasksCreated = outcome.check.created - outcome.check.lost
    const allDelivered = hooks === undefined ? undefined : await hooks.waitFor(tasksCreated, Date.now() + options.catchupTimeoutS * 1000)
    const afterDeliveries = hooks === undefined ? undefined : await serverSnapshot(privateNats.monitorUrl)

    const hops = await watch?.finish(options.latencyWarmupS * 1000)
    watch = undefined
    const admin = await connect({ servers: privateNats.url, name: "bench-admin", noAsyncTraces: true })
    let logEnd: number | undefined
    let latency: LogLatency | undefined
    try {
      logEnd = await lastStoredAt(admin, eventsStream(stack.naming))
      if (spec.readLatency) latency = await readLogLatency(admin, eventsStream(stack.naming), stack.naming.subjectRoot, options.latencyWarmupS * 1000)
    } finally {
      await admin.close()
    }

    const firstCreateAt = outcome.producer?.firstAt ?? 0
    const lastCompletionAt = logEnd ?? outcome.workersLastAt
    const elapsedMs = Math.max(1, lastCompletionAt - firstCreateAt)
    // Tasks completed (at least once): the created count in a clean run, less in a run that lost some.
    const tasks = outcome.check.created - outcome.check.lost
    const perTask = Math.max(1, tasks)
    const deduct = (n: number) => ({ name: BROKER_CONNECTION, counters: scaled(scrapeCost, n) })
    const caughtUpAt = settled.caughtUpAt
    const delayMs = caughtUpAt === undefined ? undefined : Math.max(0, caughtUpAt - lastCompletionAt)

    const webhooks: WebhookOutcome | undefined =
      hooks === undefined || afterDeliveries === undefined
        ? undefined
        : {
            delivered: hooks.delivered(),
            duplicates: hooks.duplicates(),
            rejected: hooks.rejected(),
            allDelivered: allDelivered === true,
            lastDeliveryAt: hooks.lastAt(),
            tasksPerSec: (hooks.delivered() * 1000) / Math.max(1, hooks.lastAt() - firstCreateAt),
            delayMs: Math.max(0, hooks.lastAt() - outcome.workersLastAt),
            traffic: trafficPerTask(before, afterDeliveries, perTask, OWN_CONNECTIONS, deduct(scrapes.scrapes))
          }
    let spans: CodeqRunResult["spans"]
    if (receiver !== undefined) {
      // The broker flushes its spans on SIGTERM; the producer and workers did when they stopped.
      await stack.broker.kill(8_000)
      spans = { received: receiver.spanCount(), perTask: receiver.spanCount() / perTask }
    }
    return {
      system: "codeq",
      variant: spec.variant,
      round: spec.round,
      via: spec.via,
      tasks: spec.tasks,
      rate: spec.rate,
      tracing: spec.tracing,
      clean: outcome.check.clean && !outcome.stalled && (webhooks === undefined || (webhooks.allDelivered && webhooks.duplicates === 0 && webhooks.rejected === 0)),
      check: outcome.check,
      stalled: outcome.stalled,
      firstCreateAt,
      lastCompletionAt,
      lastCompletionFrom: logEnd === undefined ? "workers" : "log",
      elapsedMs,
      tasksPerSec: (tasks * 1000) / elapsedMs,
      catchUp: {
        ...settled,
        caughtUp: caughtUpAt !== undefined,
        delayMs,
        tasksPerSec: caughtUpAt === undefined ? undefined : (tasks * 1000) / Math.max(1, caughtUpAt - firstCreateAt),
        timeoutS: options.catchupTimeoutS
      },
      traffic: {
        atCompletion: trafficPerTask(before, atCompletion, perTask, OWN_CONNECTIONS, deduct(scrapesAtCompletion)),
        withCatchUp: trafficPerTask(before, afterCatchUp, perTask, OWN_CONNECTIONS, deduct(settled.scrapes)),
        scrapeCost
      },
      rss: {
        startBytes: rssStart,
        peakBytes: rssPeak,
        endBytes: rssEnd,
        afterCatchUpBytes: rssAfter,
        halves: firstHalfPeak === undefined || secondHalfPeak === undefined ? undefined : { firstPeakBytes: firstHalfPeak, secondPeakBytes: secondHalfPeak }
      },
      latency,
      hops,
      spans,
      webhooks,
      cpu: outcome.cpu,
      errors: outcome.errors
    }
  } finally {
    scrapes.cancelled = true
    sampler?.stop()
    await watch?.finish(0).catch(() => undefined)
    await group.killAll()
    await receiver?.stop()
    await hooks?.stop()
    await nats?.stop()
  }
}
