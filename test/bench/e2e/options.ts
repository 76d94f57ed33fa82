/**
 * Options of `npm run bench -- e2e`, validated up front: a bad value names its flag and the run
 * does not start. Defaults are the shape of issue 10 (20,000 tasks, 200-byte payloads, batches of
 * 1,000, one worker process at concurrency 64, three interleaved rounds).
 */
import { parseArgs } from "node:util"

/** Every variant a run can measure, in the order of the first round. */
export const VARIANTS = ["codeq-sdk", "codeq-http", "bullmq", "raw-js", "bare", "tracing", "webhooks", "latency", "bare-latency", "rss"] as const
export type VariantName = (typeof VARIANTS)[number]

/** Variants measured once per round, order rotated; `latency` and `bare-latency` follow them, `rss` runs once at the end. */
export const ROTATED: ReadonlyArray<VariantName> = ["codeq-sdk", "codeq-http", "bullmq", "raw-js", "bare", "tracing", "webhooks"]

export interface E2eOptions {
  readonly rounds: number
  readonly tasks: number
  readonly payload: number
  readonly batch: number
  readonly workers: number
  readonly concurrency: number
  readonly variants: ReadonlyArray<VariantName>
  readonly rssTasks: number
  readonly latencyTasks: number
  /** Fixed rate of the latency run; 0 means half the median codeq-sdk rate measured so far. */
  readonly latencyRate: number
  /** Tasks created in the first this-many seconds of a latency run are not measured (warm-up). */
  readonly latencyWarmupS: number
  /** Latency runs also time each hop from a connection of the bench's own (hops.ts). */
  readonly hops: boolean
  readonly httpInflight: number
  readonly httpClaimers: number
  readonly catchupTimeoutS: number
  readonly catchupPollMs: number
  readonly stallTimeoutS: number
  readonly redis: { readonly host: string; readonly port: number }
  readonly writeMarkdown: boolean
}

export const E2E_USAGE = `usage: npm run bench -- e2e [options]

codeq measured from the outside (codeq serve, SDK and HTTP clients in their own processes, a
private nats-server per run with monitoring on) against BullMQ on the local Redis, the raw
JetStream ceiling and the design's operations from bare nats.js clients, in interleaved rounds.
Writes bench-results/e2e-<time>.json and the results table of BENCHMARKS.md.

  --rounds N            interleaved rounds; each runs every variant once, order rotated (default 3)
  --tasks N             tasks per throughput run (default 20000)
  --payload BYTES       JSON payload size of each task (default 200)
  --batch N             tasks per createMany / addBulk call (default 1000; HTTP caps it at 100)
  --workers N           worker processes (default 1)
  --concurrency N       handlers in flight per worker process (default 64)
  --only LIST           comma-separated variants to run (default all):
                        ${VARIANTS.join(", ")}
  --skip-rss            leave out the long RSS run
  --rss-tasks N         tasks of the RSS run (default 200000)
  --latency-tasks N     tasks of each latency run (default 10000)
  --latency-warmup S    seconds at the start of a latency run left out of the percentiles:
                        JIT warm-up, consumers being made (default 2)
  --latency-rate N      tasks/s of the latency runs, codeq's and the bare clients' (default 0: half
                        the median codeq-sdk rate so far)
  --hops                latency runs also time each hop of create→claimed from an observer
                        connection that sees every message (a diagnostic: it adds load, so
                        BENCHMARKS.md's table is not rewritten; needs latency or bare-latency)
  --http-inflight N     batch-create requests in flight from the HTTP producer (default 8)
  --http-claimers N     claim loops per HTTP worker process, each claiming up to 10 (default 8)
  --catchup-timeout S   seconds after the last completion to wait for projections (default 60)
  --catchup-poll MS     /metrics polling interval while waiting, 25..1000 (default 50)
  --stall-timeout S     a run with no progress for this long ends as failed (default 60)
  --redis HOST:PORT     Redis for BullMQ (default 127.0.0.1:6379)
  --no-markdown         do not rewrite the results table in BENCHMARKS.md
  -h, --help            this text`

/** `--flag`'s integer in [min, max] (underscores allowed), the fallback when absent; throws naming the flag and the range. */
export const integer = (flag: string, raw: string | undefined, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number => {
  if (raw === undefined) return fallback
  const value = Number(raw.replace(/_/g, ""))
  if (raw.trim() === "" || !Number.isSafeInteger(value) || value < min || value > max)
    throw new Error(`--${flag} must be an integer from ${min}${max === Number.MAX_SAFE_INTEGER ? " up" : ` to ${max}`}, got '${raw}'`)
  return value
}

const variantsOf = (only: string | undefined, skipRss: boolean): ReadonlyArray<VariantName> => {
  const names = only === undefined ? [...VARIANTS] : only.split(",").map((name) => name.trim()).filter((name) => name !== "")
  for (const name of names)
    if (!(VARIANTS as ReadonlyArray<string>).includes(name)) throw new Error(`--only: unknown variant '${name}' (known: ${VARIANTS.join(", ")})`)
  if (names.length === 0) throw new Error("--only must name at least one variant")
  const chosen = VARIANTS.filter((name) => names.includes(name) && !(skipRss && name === "rss"))
  if (chosen.length === 0) throw new Error("--only rss together with --skip-rss leaves nothing to run")
  return chosen
}

const redisOf = (raw: string | undefined): E2eOptions["redis"] => {
  if (raw === undefined) return { host: "127.0.0.1", port: 6379 }
  const match = /^([^:\s]+):(\d{1,5})$/.exec(raw)
  const port = Number(match?.[2])
  if (match?.[1] === undefined || port < 1 || port > 65535) throw new Error(`--redis must be HOST:PORT, got '${raw}'`)
  return { host: match[1], port }
}

export type Parsed = { readonly ok: true; readonly options: E2eOptions } | { readonly ok: false; readonly help: boolean; readonly error: string }

export const parseE2eArgs = (argv: ReadonlyArray<string>): Parsed => {
  try {
    const { values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        rounds: { type: "string" },
        tasks: { type: "string" },
        payload: { type: "string" },
        batch: { type: "string" },
        workers: { type: "string" },
        concurrency: { type: "string" },
        only: { type: "string" },
        "skip-rss": { type: "boolean" },
        "rss-tasks": { type: "string" },
        "latency-tasks": { type: "string" },
        "latency-rate": { type: "string" },
        "latency-warmup": { type: "string" },
        hops: { type: "boolean" },
        "http-inflight": { type: "string" },
        "http-claimers": { type: "string" },
        "catchup-timeout": { type: "string" },
        "catchup-poll": { type: "string" },
        "stall-timeout": { type: "string" },
        redis: { type: "string" },
        "no-markdown": { type: "boolean" },
        help: { type: "boolean", short: "h" }
      }
    })
    if (values.help === true) return { ok: false, help: true, error: "" }
    const options: E2eOptions = {
      rounds: integer("rounds", values.rounds, 3, 1, 100),
      tasks: integer("tasks", values.tasks, 20_000, 1),
      payload: integer("payload", values.payload, 200, 8, 256 * 1024),
      batch: integer("batch", values.batch, 1_000, 1, 10_000),
      workers: integer("workers", values.workers, 1, 1, 64),
      concurrency: integer("concurrency", values.concurrency, 64, 1, 10_000),
      variants: variantsOf(values.only, values["skip-rss"] === true),
      rssTasks: integer("rss-tasks", values["rss-tasks"], 200_000, 1),
      latencyTasks: integer("latency-tasks", values["latency-tasks"], 10_000, 1),
      latencyWarmupS: integer("latency-warmup", values["latency-warmup"], 2, 0, 3_600),
      latencyRate: integer("latency-rate", values["latency-rate"], 0, 0),
      hops: values.hops === true,
      httpInflight: integer("http-inflight", values["http-inflight"], 8, 1, 1_000),
      httpClaimers: integer("http-claimers", values["http-claimers"], 8, 1, 1_000),
      catchupTimeoutS: integer("catchup-timeout", values["catchup-timeout"], 60, 1, 3_600),
      catchupPollMs: integer("catchup-poll", values["catchup-poll"], 50, 25, 1_000),
      stallTimeoutS: integer("stall-timeout", values["stall-timeout"], 60, 1, 3_600),
      redis: redisOf(values.redis),
      // A latency watched by --hops is not the latency the table reports.
      writeMarkdown: values["no-markdown"] !== true && values.hops !== true
    }
    if (options.hops && !options.variants.includes("latency") && !options.variants.includes("bare-latency")) throw new Error("--hops times the latency runs: add latency or bare-latency to --only")
    return { ok: true, options }
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    // node:util's own wording for an unknown flag: "Unknown option '--x'. ..."; keep its first sentence.
    return { ok: false, help: false, error: message.split(". To specify a positional")[0] ?? message }
  }
}
