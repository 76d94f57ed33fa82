/**
 * From the raw runs to the one results table: per measure the median and min–max over the clean
 * runs, how many runs were clean, and the goal issue 10 sets. Ratios are ratios of medians, with
 * the spread of the same ratio taken round by round. A run that lost, duplicated or failed a task
 * never enters a median; it is listed under the table.
 */
import { median } from "../stats.js"
import type { BullmqRunResult } from "./bullmq.js"
import { BROKER_CONNECTION, type CodeqRunResult } from "./codeqRun.js"
import type { CpuPerTask } from "./cpu.js"
import type { Traffic } from "./monitor.js"
import type { VariantName } from "./options.js"
import type { BareRunResult } from "./bare.js"
import type { RawRunResult } from "./rawjs.js"

/** A run that threw before it had a result (a process that would not start, a crash). */
export interface FailedRun {
  readonly system: "failed"
  readonly variant: VariantName
  readonly round: number
  readonly clean: false
  readonly error: string
}

export type AnyRun = CodeqRunResult | BullmqRunResult | RawRunResult | BareRunResult | FailedRun

export const TABLE_HEADER = ["measure", "median", "min–max", "clean runs", "goal (issue 10)", "note"] as const
export type Row = ReadonlyArray<string>

const num = (digits: number) => (value: number | undefined) =>
  value === undefined || !Number.isFinite(value) ? "-" : value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
const int = num(0)
const one = num(1)
const ratio = (value: number | undefined) => (value === undefined || !Number.isFinite(value) ? "-" : `${value.toFixed(2)}x`)
const mb = (bytes: number | undefined) => (bytes === undefined ? "-" : `${one(bytes / 1024 / 1024)} MB`)
const pct = (value: number, base: number) => `${value >= base ? "+" : ""}${(((value - base) / base) * 100).toFixed(0)} %`

const runsOf = <V extends AnyRun["variant"]>(runs: ReadonlyArray<AnyRun>, variant: V) => runs.filter((run) => run.variant === variant)
const cleanCodeq = (runs: ReadonlyArray<AnyRun>, variant: VariantName): ReadonlyArray<CodeqRunResult> =>
  runsOf(runs, variant).filter((run): run is CodeqRunResult => run.system === "codeq" && run.clean)

const row = (label: string, values: ReadonlyArray<number>, total: number, format: (v: number | undefined) => string, goal = "", note = ""): Row => [
  label,
  format(median(values)),
  values.length === 0 ? "-" : `${format(Math.min(...values))}–${format(Math.max(...values))}`,
  `${values.length}/${total}`,
  goal,
  note
]

/** Ratio of two variants' medians, spread over the rounds where both were clean. */
const ratioRow = (label: string, top: ReadonlyArray<{ round: number; value: number }>, bottom: ReadonlyArray<{ round: number; value: number }>, goal: string, note = ""): Row => {
  const perRound = top.flatMap((t) => bottom.filter((b) => b.round === t.round && b.value > 0).map((b) => t.value / b.value))
  const a = median(top.map((t) => t.value))
  const b = median(bottom.map((t) => t.value))
  return [label, ratio(a !== undefined && b !== undefined && b > 0 ? a / b : undefined), perRound.length === 0 ? "-" : `${ratio(Math.min(...perRound))}–${ratio(Math.max(...perRound))}`, `${perRound.length} rounds`, goal, note]
}

const rates = (runs: ReadonlyArray<{ round: number; tasksPerSec: number }>) => runs.map((run) => ({ round: run.round, value: run.tasksPerSec }))

const trafficRows = (label: string, picked: ReadonlyArray<Traffic>, total: number, goal: string): ReadonlyArray<Row> => {
  if (picked.length === 0) return [row(label, [], total, one, goal)]
  const names = [...new Set(picked.flatMap((t) => Object.keys(t.byConnection)))].sort((a, b) => (a === BROKER_CONNECTION ? -1 : b === BROKER_CONNECTION ? 1 : a.localeCompare(b)))
  const io = (values: ReadonlyArray<number>) => one(median(values))
  return [
    row(label, picked.map((t) => t.msgsPerTask), total, one, goal, `in ${io(picked.map((t) => t.inPerTask))} + out ${io(picked.map((t) => t.outPerTask))}`),
    row(`${label.replace(/msgs\/task.*/, "")}bytes/task (in+out)`, picked.map((t) => t.bytesPerTask), total, int, "", `out ${int(median(picked.map((t) => t.outBytesPerTask)))}`),
    ...names.map((name) => {
      const of = picked.map((t) => t.byConnection[name]).filter((c) => c !== undefined)
      return row(`· connection ${name}`, of.map((c) => c.msgsPerTask), total, one, "", `in ${io(of.map((c) => c.inPerTask))} + out ${io(of.map((c) => c.outPerTask))}; ${int(median(of.map((c) => c.bytesPerTask)))} B/task`)
    })
  ]
}

/** CPU per task summed over a run's processes, with each process's median in the note. */
const cpuRow = (label: string, picked: ReadonlyArray<CpuPerTask>, total: number): Row => {
  const names = [...new Set(picked.flatMap((c) => Object.keys(c.usPerTask)))]
  const note = names.map((name) => `${name} ${int(median(picked.map((c) => c.usPerTask[name]).filter((v): v is number => v !== undefined)))}`).join(", ")
  return row(label, picked.map((c) => c.totalUsPerTask), total, int, "", note)
}

/** The table's rows, in the order of issue 10's list. */
export const tableRows = (runs: ReadonlyArray<AnyRun>, catchupTimeoutS: number): ReadonlyArray<Row> => {
  const sdk = cleanCodeq(runs, "codeq-sdk")
  const http = cleanCodeq(runs, "codeq-http")
  const traced = cleanCodeq(runs, "tracing")
  const bull = runsOf(runs, "bullmq").filter((run): run is BullmqRunResult => run.system === "bullmq" && run.clean)
  const raw = runsOf(runs, "raw-js").filter((run): run is RawRunResult => run.system === "raw-js" && run.clean)
  const bare = runsOf(runs, "bare").filter((run): run is BareRunResult => run.system === "bare" && run.clean)
  const hooked = cleanCodeq(runs, "webhooks").filter((r) => r.webhooks !== undefined)
  const latency = cleanCodeq(runs, "latency")
  const rss = cleanCodeq(runs, "rss")
  const total = (variant: VariantName) => runsOf(runs, variant).length
  const rows: Array<Row> = []

  rows.push(row("codeq-sdk end to end (tasks/s)", sdk.map((r) => r.tasksPerSec), total("codeq-sdk"), int, "≥ 1.0x BullMQ (goal 2x)"))
  const caught = sdk.filter((r) => r.catchUp.caughtUp)
  const behind = sdk.filter((r) => !r.catchUp.caughtUp)
  const lagOf = (lag: Readonly<Record<string, number>> | undefined) =>
    Object.entries(lag ?? {})
      .filter(([, n]) => n > 0)
      .map(([p, n]) => `${p} ${int(n)}`)
      .join(", ") || "none"
  const first = behind[0]?.catchUp
  const lagNote =
    first === undefined ? "" : `${behind.length} run(s) not caught up within ${catchupTimeoutS} s; events behind at last completion: ${lagOf(first.firstLag)}; at the deadline: ${lagOf(first.lastLag)}`
  rows.push(row("codeq-sdk to projections caught up (tasks/s)", caught.map((r) => r.catchUp.tasksPerSec ?? 0), total("codeq-sdk"), int, "", lagNote))
  rows.push(row("catch-up delay after last completion (ms)", caught.map((r) => r.catchUp.delayMs ?? 0), total("codeq-sdk"), int, "≤ 1,000", behind.length > 0 ? "not caught up (see above)" : ""))
  rows.push(row("codeq-http end to end (tasks/s)", http.map((r) => r.tasksPerSec), total("codeq-http"), int))
  rows.push(row("bullmq end to end (jobs/s)", bull.map((r) => r.tasksPerSec), total("bullmq"), int))
  rows.push(ratioRow("codeq-sdk / bullmq", rates(sdk), rates(bull), "≥ 1.00x"))
  rows.push(ratioRow("codeq-http / codeq-sdk", rates(http), rates(sdk), "≥ 0.40x"))
  rows.push(row("bare: the design's operations, plain nats.js (tasks/s)", bare.map((r) => r.tasksPerSec), total("bare"), int, "", "DESIGN §2–§4's server operations, no codeq logic (bare.ts)"))
  rows.push(ratioRow("bare / bullmq", rates(bare), rates(bull), ""))
  rows.push(ratioRow("codeq-sdk / bare", rates(sdk), rates(bare), ""))
  const spans = median(traced.map((r) => r.spans?.perTask ?? 0))
  rows.push(row("codeq-sdk tracing on, ratio 1.0, OTLP (tasks/s)", traced.map((r) => r.tasksPerSec), total("tracing"), int, "", spans === undefined ? "" : `${one(spans)} spans/task received`))
  rows.push(ratioRow("tracing on / off", rates(traced), rates(sdk), "≥ 0.85x"))
  rows.push(...trafficRows("codeq-sdk server msgs/task (in+out), at last completion", sdk.map((r) => r.traffic.atCompletion), total("codeq-sdk"), "≤ 15"))
  const withCatchUp = trafficRows("codeq-sdk server msgs/task incl. catch-up", sdk.map((r) => r.traffic.withCatchUp), total("codeq-sdk"), "")[0]
  if (withCatchUp !== undefined) rows.push(behind.length === 0 ? withCatchUp : [...withCatchUp.slice(0, 5), `${withCatchUp[5] ?? ""}; ${behind.length} run(s) only until the deadline`])
  const cpuOf = (picked: ReadonlyArray<{ cpu: CpuPerTask | undefined }>) => picked.map((r) => r.cpu).filter((c): c is CpuPerTask => c !== undefined)
  rows.push(cpuRow("codeq-sdk CPU µs/task, all processes", cpuOf(sdk), total("codeq-sdk")))
  rows.push(cpuRow("bullmq CPU µs/task, all processes", cpuOf(bull), total("bullmq")))
  rows.push(cpuRow("codeq-sdk tracing on, CPU µs/task", cpuOf(traced), total("tracing")))
  rows.push(cpuRow("bare CPU µs/task, all processes", cpuOf(bare), total("bare")))
  rows.push(...trafficRows("bare server msgs/task (in+out)", bare.map((r) => r.traffic), total("bare"), "").filter((_, i) => i !== 1))
  const hooks = hooked.flatMap((r) => (r.webhooks === undefined ? [] : [{ round: r.round, ...r.webhooks }]))
  rows.push(row("codeq-sdk with a webhook per task, to last delivery (tasks/s)", hooks.map((h) => h.tasksPerSec), total("webhooks"), int))
  rows.push(ratioRow("webhooks to last delivery / codeq-sdk", hooks.map((h) => ({ round: h.round, value: h.tasksPerSec })), rates(sdk), ""))
  rows.push(row("last webhook after the workers' last completion (ms)", hooks.map((h) => h.delayMs), total("webhooks"), int))
  rows.push(...trafficRows("webhooks server msgs/task (in+out), to last delivery", hooks.map((h) => h.traffic), total("webhooks"), "").filter((_, i) => i !== 1))
  rows.push(...trafficRows("codeq-http server msgs/task, at last completion", http.map((r) => r.traffic.atCompletion), total("codeq-http"), "").slice(0, 1))
  rows.push(row("raw JetStream acked publishes/s (pipelined)", raw.map((r) => r.publishPerSec), total("raw-js"), int))
  rows.push(row("raw JetStream consume+ack/s (pull, batch 256)", raw.map((r) => r.consumePerSec), total("raw-js"), int))
  const rate = median(latency.map((r) => r.rate))
  const at = rate === undefined ? "" : `at ${int(rate)} tasks/s`
  for (const [name, pick] of [
    ["create→claimed", (r: CodeqRunResult) => r.latency?.createdToClaimed],
    ["create→completed", (r: CodeqRunResult) => r.latency?.createdToCompleted]
  ] as const) {
    for (const p of ["p50", "p95", "p99"] as const) {
      const values = latency.map((r) => pick(r)?.[p]).filter((v): v is number => v !== undefined)
      rows.push(row(`latency ${name} ${p} (ms)`, values, total("latency"), one, name === "create→claimed" && p === "p99" ? "< 10" : "", p === "p50" ? at : ""))
    }
  }
  // The same operations from bare clients at the same rate: the latency the design leaves here.
  const bareLatency = runsOf(runs, "bare-latency").filter((run): run is BareRunResult => run.system === "bare" && run.clean)
  const bareRate = median(bareLatency.map((r) => r.rate))
  for (const p of ["p50", "p95", "p99"] as const) {
    const values = bareLatency.map((r) => r.latency?.createdToClaimed?.[p]).filter((v): v is number => v !== undefined)
    rows.push(row(`bare latency create→claimed ${p} (ms)`, values, total("bare-latency"), one, "", p === "p50" && bareRate !== undefined ? `at ${int(bareRate)} tasks/s` : ""))
  }
  const start = median(rss.map((r) => r.rss?.startBytes ?? 0))
  const rssRow = (label: string, pick: (r: CodeqRunResult) => number | undefined, goal: string) => {
    const values = rss.map(pick).filter((v): v is number => v !== undefined)
    const m = median(values)
    return [...row(label, values, total("rss"), mb, goal).slice(0, 5), m !== undefined && start !== undefined && start > 0 ? `${pct(m, start)} vs start` : ""]
  }
  const tasksNote = rss[0] === undefined ? "" : `${int(rss[0].tasks)} tasks`
  rows.push([...rssRow("broker RSS at start (after ready)", (r) => r.rss?.startBytes, "").slice(0, 5), tasksNote])
  rows.push(rssRow("broker RSS peak", (r) => r.rss?.peakBytes, "±20 %"))
  rows.push(rssRow("broker RSS at end", (r) => r.rss?.endBytes, "±20 %"))
  // Growth with the tasks done, apart from the working set the load builds up: the second half's peak against the first's.
  const halves = rss.map((r) => r.rss?.halves).filter((h): h is NonNullable<typeof h> => h !== undefined)
  const firstHalf = median(halves.map((h) => h.firstPeakBytes))
  const secondHalf = median(halves.map((h) => h.secondPeakBytes))
  rows.push([
    ...row("broker RSS peak, run's first half", halves.map((h) => h.firstPeakBytes), total("rss"), mb, "").slice(0, 5),
    ""
  ])
  rows.push([
    ...row("broker RSS peak, run's second half", halves.map((h) => h.secondPeakBytes), total("rss"), mb, "").slice(0, 5),
    secondHalf !== undefined && firstHalf !== undefined && firstHalf > 0 ? `${pct(secondHalf, firstHalf)} vs first half` : ""
  ])
  return rows
}

/** An error with its stack or log tail folded onto one line (stack frames left out), at most 400 characters. */
const oneLine = (text: string) =>
  text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("at "))
    .join(" | ")
    .slice(0, 400)

/** One line per run that does not count, saying why. */
export const failedRuns = (runs: ReadonlyArray<AnyRun>): ReadonlyArray<string> =>
  runs
    .filter((run) => !run.clean)
    .map((run) => {
      const where = `round ${run.round} ${run.variant}`
      if (run.system === "failed") return `${where}: failed: ${oneLine(run.error)}`
      if (run.system === "raw-js") return `${where}: ${run.raw.published}/${run.messages} acked, ${run.raw.consumed} consumed, ack floor ${run.raw.ackFloor}; ${run.errors.join(" | ")}`
      const c = run.check
      const hooks = run.system !== "codeq" || run.webhooks === undefined ? "" : `, webhooks delivered ${run.webhooks.delivered} (twice ${run.webhooks.duplicates}, rejected ${run.webhooks.rejected})`
      return `${where}: created ${c.created} (failed ${c.createFailures}), completions ${c.completions}, lost ${c.lost}, duplicates ${c.duplicates}, unknown ${c.unknown}${hooks}${run.stalled ? ", stalled" : ""}; ${run.errors.slice(0, 3).join(" | ")}`
    })
