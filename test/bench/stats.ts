/**
 * Run bookkeeping and reporting for the benchmarks: what one timed run produced (acks, failures,
 * what the stream actually stored), the median/min/max over the clean runs of a variant, and the
 * plain-text table. A run with any failed or missing message is kept apart from the statistics and
 * reported, so a fast-but-lossy run can never lift a median.
 */

/** What one timed run of one variant produced. */
export interface RunResult {
  /** Messages the run tried to append. */
  readonly attempted: number
  /** Messages acknowledged by the server with a stream sequence. */
  readonly acked: number
  /** Messages that ended in an error (timeout, refusal, conflict, closed connection). */
  readonly failed: number
  /** Messages the stream held after the run (it is purged before each run); undefined if unknown. */
  readonly stored: number | undefined
  /** From the first publish to the last ack or error, in milliseconds. */
  readonly elapsedMs: number
  /** A few distinct error messages, for the report. */
  readonly errors: ReadonlyArray<string>
}

/** A run counts only when every message was acked and the stream holds exactly those messages. */
export const isClean = (run: RunResult): boolean =>
  run.failed === 0 && run.acked === run.attempted && (run.stored === undefined || run.stored === run.attempted)

/** Acked messages per second of a run. */
export const rate = (run: RunResult): number => (run.elapsedMs > 0 ? (run.acked * 1000) / run.elapsedMs : 0)

export interface Summary {
  readonly cleanRuns: number
  readonly failedRuns: number
  readonly median: number | undefined
  readonly min: number | undefined
  readonly max: number | undefined
}

export const median = (values: ReadonlyArray<number>): number | undefined => {
  if (values.length === 0) return undefined
  const sorted = [...values].sort((x, y) => x - y)
  const mid = Math.floor(sorted.length / 2)
  const upper = sorted[mid] ?? 0
  return sorted.length % 2 === 1 ? upper : ((sorted[mid - 1] ?? 0) + upper) / 2
}

/** Statistics over the clean runs; failed runs are only counted. */
export const summarize = (runs: ReadonlyArray<RunResult>): Summary => {
  const rates = runs.filter(isClean).map(rate)
  return {
    cleanRuns: rates.length,
    failedRuns: runs.length - rates.length,
    median: median(rates),
    min: rates.length === 0 ? undefined : Math.min(...rates),
    max: rates.length === 0 ? undefined : Math.max(...rates)
  }
}

/** Collects up to `limit` distinct error messages. */
export class ErrorSample {
  private readonly seen = new Set<string>()
  constructor(private readonly limit = 3) {}
  add(message: string): void {
    if (this.seen.size < this.limit) this.seen.add(message)
  }
  get messages(): ReadonlyArray<string> {
    return [...this.seen]
  }
}

const thousands = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 })
export const formatRate = (value: number | undefined): string => (value === undefined ? "-" : thousands.format(value))
export const formatRatio = (value: number | undefined): string =>
  value === undefined || !Number.isFinite(value) ? "-" : `${value.toFixed(2)}x`

/** A plain-text table: the first column left-aligned, the others right-aligned. */
export const renderTable = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const all = [header, ...rows]
  const widths = header.map((_, col) => Math.max(...all.map((row) => (row[col] ?? "").length)))
  const line = (row: ReadonlyArray<string>) =>
    row
      .map((cell, col) => (col === 0 ? cell.padEnd(widths[col] ?? 0) : cell.padStart(widths[col] ?? 0)))
      .join("  ")
      .trimEnd()
  const rule = widths.map((w) => "-".repeat(w)).join("  ")
  return [line(header), rule, ...rows.map(line)].join("\n")
}
