/**
 * `npm run bench -- e2e`: codeq measured from the outside, as users run it, against BullMQ and the
 * raw JetStream ceiling, in one run on one machine (issue 10).
 *
 * Rounds are interleaved so drift in the machine's load hits every variant alike: each round runs
 * every throughput variant once, the order rotated by one each round; then the latency run (at
 * half the median codeq-sdk rate measured so far); the long RSS run comes once, at the end. Every
 * run has its own nats-server and processes, all killed in the run's `finally`.
 */
import { mkdir } from "node:fs/promises"
import { join } from "node:path"
import { median } from "../stats.js"
import type { AnyRun, FailedRun } from "./summary.js"
import { runCodeq, type CodeqRunResult, type CodeqSpec, type RunContext } from "./codeqRun.js"
import { HOP_STEPS, type HopReport } from "./hops.js"
import { E2E_USAGE, parseE2eArgs, ROTATED, type E2eOptions, type VariantName } from "./options.js"
import { buildReport, renderText, RESULTS_DIR, runInfo, updateMarkdown, writeJson } from "./output.js"
import { ProcessGroup } from "./processes.js"
import { ACTIVE_SERVERS } from "./stack.js"
import { buildDist } from "../../support/build.js"

const int = (value: number | undefined) => (value === undefined ? "-" : Math.round(value).toLocaleString("en-US"))

/** Rotates `list` left by `by`. */
const rotate = <T>(list: ReadonlyArray<T>, by: number): ReadonlyArray<T> => list.map((_, i) => list[(i + by) % list.length] as T)

/** A latency run's hops, p50/p99 each (hops.ts). */
const describeHops = (hops: HopReport | undefined): string =>
  hops === undefined
    ? ""
    : `; by hop, p50/p99 ms: ${HOP_STEPS.map((step) => {
        const p = hops.steps[step]
        return `${step} ${p === undefined ? "-" : `${p.p50.toFixed(1)}/${p.p99.toFixed(1)}`}`
      }).join(", ")} (${int(hops.tasks)} tasks)`

const describe = (run: AnyRun): string => {
  if (run.system === "failed") return `FAILED (${run.error.split("\n")[0] ?? ""})`
  if (run.system === "raw-js") return `${int(run.publishPerSec)} acked publishes/s, ${int(run.consumePerSec)} consume+ack/s${run.clean ? "" : " NOT CLEAN"}`
  if (run.system === "bare") {
    const claimed = run.latency?.createdToClaimed
    const latency = claimed === undefined ? "" : `, create→claimed p50/p99 ${claimed.p50.toFixed(1)}/${claimed.p99.toFixed(1)} ms`
    return `${int(run.tasksPerSec)} tasks/s${run.clean ? "" : ` NOT CLEAN (lost ${run.check.lost}, duplicates ${run.check.duplicates}, create failures ${run.check.createFailures})`}, ${run.traffic.msgsPerTask.toFixed(1)} server msgs/task, CPU ${int(run.cpu?.totalUsPerTask)} µs/task${latency}${describeHops(run.hops)}`
  }
  const rate = `${int(run.tasksPerSec)} ${run.system === "bullmq" ? "jobs" : "tasks"}/s${run.clean ? "" : ` NOT CLEAN (lost ${run.check.lost}, duplicates ${run.check.duplicates}, create failures ${run.check.createFailures})`}`
  if (run.system === "bullmq") return rate
  const catchUp = run.catchUp.caughtUp ? `caught up +${int(run.catchUp.delayMs)} ms` : `NOT caught up within ${run.catchUp.timeoutS} s`
  const latency = run.latency?.createdToClaimed === undefined ? "" : `, create→claimed p50/p99 ${run.latency.createdToClaimed.p50.toFixed(1)}/${run.latency.createdToClaimed.p99.toFixed(1)} ms`
  const rss = run.variant === "rss" && run.rss !== undefined ? `, RSS ${(run.rss.startBytes / 2 ** 20).toFixed(0)}→${(run.rss.peakBytes / 2 ** 20).toFixed(0)}→${(run.rss.endBytes / 2 ** 20).toFixed(0)} MB${run.rss.halves === undefined ? "" : ` (peak ${(run.rss.halves.firstPeakBytes / 2 ** 20).toFixed(0)} MB in the first half, ${(run.rss.halves.secondPeakBytes / 2 ** 20).toFixed(0)} in the second)`}` : ""
  const hooks =
    run.webhooks === undefined
      ? ""
      : `, ${int(run.webhooks.delivered)} webhooks delivered (${int(run.webhooks.duplicates)} twice), last +${int(run.webhooks.delayMs)} ms: ${int(run.webhooks.tasksPerSec)} tasks/s, ${run.webhooks.traffic.msgsPerTask.toFixed(1)} server msgs/task`
  return `${rate}, ${catchUp}, ${run.traffic.atCompletion.msgsPerTask.toFixed(1)} server msgs/task${latency}${describeHops(run.hops)}${rss}${hooks}`
}

/** The half-load rate of the latency run: the option, else half the median codeq-sdk rate so far. */
const latencyRate = (options: E2eOptions, runs: ReadonlyArray<AnyRun>): number | undefined => {
  if (options.latencyRate > 0) return options.latencyRate
  const peak = median(runs.filter((run): run is CodeqRunResult => run.system === "codeq" && run.variant === "codeq-sdk" && run.clean).map((run) => run.tasksPerSec))
  return peak === undefined ? undefined : Math.max(1, Math.round(peak / 2))
}

const codeqSpec = (variant: VariantName, round: number, options: E2eOptions, rate = 0): CodeqSpec => ({
  variant,
  round,
  via: variant === "codeq-http" ? "http" : "sdk",
  tasks: variant === "rss" ? options.rssTasks : variant === "latency" ? options.latencyTasks : options.tasks,
  rate,
  tracing: variant === "tracing",
  readLatency: variant === "latency",
  webhooks: variant === "webhooks"
})

const runVariant = async (variant: VariantName, round: number, ctx: RunContext, rate: number): Promise<AnyRun> => {
  try {
    if (variant === "bullmq") return await (await import("./bullmq.js")).runBullmq(round, ctx)
    if (variant === "raw-js") return await (await import("./rawjs.js")).runRawJs(round, ctx)
    if (variant === "bare" || variant === "bare-latency") return await (await import("./bare.js")).runBare(round, ctx, variant === "bare-latency" ? rate : 0)
    return await runCodeq(codeqSpec(variant, round, ctx.options, rate), ctx)
  } catch (error) {
    const failed: FailedRun = { system: "failed", variant, round, clean: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }
    return failed
  }
}

const killEverything = async () => {
  await ProcessGroup.killEverything()
  await Promise.allSettled([...ACTIVE_SERVERS].map((nats) => nats.stop()))
}

/** The `e2e` benchmark; resolves with the exit status (0 when every run was clean). */
export const runE2e = async (argv: ReadonlyArray<string>): Promise<number> => {
  const parsed = parseE2eArgs(argv)
  if (!parsed.ok) {
    if (parsed.help) {
      console.log(E2E_USAGE)
      return 0
    }
    console.error(`e2e: ${parsed.error}\nrun 'npm run bench -- e2e --help' for the options`)
    return 1
  }
  const { options } = parsed
  // The broker measured is the build `codeq serve` runs: make it from the sources first.
  console.error("e2e: building dist/ (the broker measured) …")
  buildDist()
  const started = new Date()
  const stamp = started.toISOString().replace(/[:.]/g, "-")
  const logDir = join(RESULTS_DIR, `e2e-${stamp}-logs`)
  await mkdir(logDir, { recursive: true })
  const ctx: RunContext = { options, logDir }
  const onSignal = (signal: NodeJS.Signals) => {
    console.error(`\ne2e: ${signal}: stopping every process of the run`)
    void killEverything().finally(() => process.exit(130))
  }
  process.once("SIGINT", onSignal)
  process.once("SIGTERM", onSignal)

  const runs: Array<AnyRun> = []
  const notes: Array<string> = []
  const record = (run: AnyRun, label: string) => {
    runs.push(run)
    console.error(`${label} ${run.variant}: ${describe(run)}`)
  }
  const rotated = ROTATED.filter((variant) => options.variants.includes(variant))
  const paced = (["latency", "bare-latency"] as const).filter((variant) => options.variants.includes(variant))
  const perRound = [...rotated, ...paced]
  const plan = [...(perRound.length > 0 ? [`${options.rounds} round(s) of ${perRound.join(", ")}`] : []), ...(options.variants.includes("rss") ? [`rss (${int(options.rssTasks)} tasks)`] : [])]
  console.error(`e2e: ${plan.join(", then ")}; logs in ${logDir}`)
  try {
    for (let round = 1; round <= options.rounds; round++) {
      const label = `round ${round}/${options.rounds}`
      for (const variant of rotate(rotated, round - 1)) record(await runVariant(variant, round, ctx, 0), label)
      for (const variant of paced) {
        const rate = latencyRate(options, runs)
        if (rate === undefined) notes.push(`round ${round}: ${variant} not measured: no clean codeq-sdk run to take half of (pass --latency-rate)`)
        else record(await runVariant(variant, round, ctx, rate), label)
      }
    }
    if (options.variants.includes("rss")) record(await runVariant("rss", 1, ctx, 0), "once:")
  } finally {
    process.off("SIGINT", onSignal)
    process.off("SIGTERM", onSignal)
    await killEverything()
  }

  const report = buildReport(await runInfo(argv, started, options), options, runs, notes)
  const jsonPath = await writeJson(report, stamp)
  console.log(renderText(report))
  console.log(`\nJSON: ${jsonPath}`)
  if (options.writeMarkdown) console.log(`results table written to ${await updateMarkdown(report, jsonPath)}`)
  return report.failed.length === 0 && notes.length === 0 ? 0 : 1
}
