/**
 * The append benchmark's report: one JSON-able object (for `--json`) and its plain-text rendering
 * (a table of median/min/max acked msgs/s per variant and each median's ratio to js.publish in
 * flight, the per-run rates in order, and every run that lost or failed a message).
 */
import type { VariantId } from "./appendVariants.js"
import { formatRate, formatRatio, isClean, rate, renderTable, summarize, type RunResult } from "./stats.js"

/** The variant every median is compared with: nats.js js.publish with promises in flight. */
export const BASELINE: VariantId = "b"

export interface AppendConfig {
  readonly size: number
  readonly count: number
  readonly serialCount: number
  readonly inflight: number
  readonly runs: number
  readonly warmup: number
  readonly ackTimeoutMs: number
}

export interface AppendServer {
  readonly url: string
  readonly version: string
  /** True when the benchmark started the server itself. */
  readonly own: boolean
  readonly stream: string
  readonly storage: string
}

export interface VariantRuns {
  readonly id: VariantId
  readonly label: string
  readonly countPerRun: number
  readonly runs: ReadonlyArray<RunResult>
}

export interface AppendReport {
  readonly benchmark: "append"
  readonly config: AppendConfig
  readonly server: AppendServer
  readonly host: { readonly node: string; readonly cpus: number; readonly nats: string }
  readonly variants: ReadonlyArray<{
    readonly id: VariantId
    readonly label: string
    readonly countPerRun: number
    readonly cleanRuns: number
    readonly failedRuns: number
    /** Acked msgs/s over the clean runs; null when no run was clean. */
    readonly median: number | null
    readonly min: number | null
    readonly max: number | null
    /** This variant's median over the baseline's median. */
    readonly ratioToBaseline: number | null
    readonly runs: ReadonlyArray<RunResult & { readonly msgsPerSec: number; readonly clean: boolean }>
  }>
  readonly baseline: VariantId
  readonly allClean: boolean
  readonly totalSeconds: number
}

const orNull = (value: number | undefined): number | null => (value === undefined ? null : value)
const round1 = (value: number): number => Math.round(value * 10) / 10

export const buildReport = (
  config: AppendConfig,
  server: AppendServer,
  host: AppendReport["host"],
  results: ReadonlyArray<VariantRuns>,
  totalSeconds: number
): AppendReport => {
  const summaries = results.map((result) => ({ result, summary: summarize(result.runs) }))
  const baseline = summaries.find(({ result }) => result.id === BASELINE)?.summary.median
  return {
    benchmark: "append",
    config,
    server,
    host,
    variants: summaries.map(({ result, summary }) => ({
      id: result.id,
      label: result.label,
      countPerRun: result.countPerRun,
      cleanRuns: summary.cleanRuns,
      failedRuns: summary.failedRuns,
      median: orNull(summary.median),
      min: orNull(summary.min),
      max: orNull(summary.max),
      ratioToBaseline:
        summary.median === undefined || baseline === undefined || baseline === 0 ? null : summary.median / baseline,
      runs: result.runs.map((run) => ({
        ...run,
        elapsedMs: round1(run.elapsedMs),
        msgsPerSec: Math.round(rate(run)),
        clean: isClean(run)
      }))
    })),
    baseline: BASELINE,
    allClean: summaries.every(({ summary }) => summary.failedRuns === 0),
    totalSeconds: round1(totalSeconds)
  }
}

const toUndefined = (value: number | null): number | undefined => (value === null ? undefined : value)

export const renderReport = (report: AppendReport): string => {
  const { config: c, server: s } = report
  const lines = [
    `append benchmark: nats-server ${s.version} at ${s.url} (${s.own ? "started by the benchmark" : "external"}), ` +
      `stream ${s.stream} (${s.storage} storage, purged before every run)`,
    `node ${report.host.node}, nats.js ${report.host.nats} (noAsyncTraces: true), ${report.host.cpus} cpus`,
    `${c.size}-byte messages, ${c.count} per run (c: ${c.serialCount}), ${c.inflight} in flight, ` +
      `${c.runs} runs per variant interleaved after a ${c.warmup}-message warm-up; acked msgs/s`,
    ""
  ]
  const rows = report.variants.map((v) => [
    `${v.id.padEnd(2)}  ${v.label}`,
    formatRate(toUndefined(v.median)),
    formatRate(toUndefined(v.min)),
    formatRate(toUndefined(v.max)),
    formatRatio(toUndefined(v.ratioToBaseline)),
    `${v.cleanRuns}/${v.cleanRuns + v.failedRuns}`
  ])
  lines.push(renderTable(["variant", "median", "min", "max", `vs ${report.baseline}`, "clean runs"], rows))
  lines.push("", "per run (msgs/s, in run order):")
  for (const v of report.variants)
    lines.push(`  ${v.id.padEnd(2)}  ${v.runs.map((run) => (run.clean ? formatRate(run.msgsPerSec) : "FAILED")).join("  ")}`)
  const failures = report.variants.flatMap((v) =>
    v.runs.flatMap((run, index) =>
      run.clean
        ? []
        : [
            `  ${v.id} run ${index + 1}: ${run.acked}/${run.attempted} acked, ${run.failed} failed, ` +
              `stream held ${run.stored ?? "?"}; ${run.errors.join(" | ") || "no error message"}`
          ]
    )
  )
  if (failures.length > 0) lines.push("", "runs with failed or missing messages (left out of the statistics):", ...failures)
  lines.push("", `total ${report.totalSeconds} s${report.allClean ? "" : "; SOME RUNS FAILED"}`)
  return lines.join("\n")
}
