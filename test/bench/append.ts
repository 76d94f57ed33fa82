/**
 * `npm run bench -- append`: how fast can codeq append acked events to JetStream from Node?
 * DESIGN §9 says the client's per-request machinery, not the server, is the first limit, and that
 * the pipelined publisher lifts it ~6×; this measures that claim (and the cost of the event log's
 * own headers and expected-sequence check) in one run against one server, variants interleaved so
 * drift in the machine's load hits all of them alike. Every message must be acked and found in the
 * stream; a run that loses or fails one is reported, not averaged.
 */
import { randomBytes } from "node:crypto"
import { createRequire } from "node:module"
import { cpus } from "node:os"
import { parseArgs } from "node:util"
import { connect, type NatsConnection } from "nats"
import { eventsStream, streamDefinitions, type Naming } from "../../streams/definitions.js"
import { provisionStream } from "../../src/eventlog/provision.js"
import { startNatsServer, type NatsServerHandle } from "../../src/testing/natsServer.js"
import { buildReport, renderReport, type AppendConfig, type VariantRuns } from "./appendReport.js"
import { createVariants, type Variant } from "./appendVariants.js"
import { formatRate, isClean, rate, type RunResult } from "./stats.js"

export const APPEND_USAGE = `usage: npm run bench -- append [options]
  --url nats://host:port   use this server (default: start a nats-server of our own)
  --size N                 message body bytes (default 256)
  --count N                messages per run for a, a2 and b (default 50000)
  --serial-count N         messages per run for c, awaited one by one (default 5000)
  --inflight N             appends in flight for a, a2 and b (default 1024)
  --runs N                 runs per variant, interleaved a, a2, b, c, a, ... (default 5)
  --warmup N               unmeasured messages per variant before the runs (default 2000)
  --ack-timeout-ms N       per-append ack deadline (default 10000)
  --json                   print the report as one JSON object instead of a table
                           (run it as 'npm run -s bench -- append --json' to keep npm's banner off stdout)
exit status: 0 when every run of every variant was clean, 1 otherwise`

type Parsed = { readonly ok: true; readonly url: string | undefined; readonly json: boolean; readonly config: AppendConfig }

const positive = (name: string, raw: string | undefined, fallback: number): number => {
  if (raw === undefined) return fallback
  const value = Number(raw.replace(/_/g, ""))
  if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`--${name} must be a positive integer, got ${raw}`)
  return value
}

export const parseAppendArgs = (argv: ReadonlyArray<string>): Parsed | { readonly ok: false; readonly error: string } => {
  try {
    const { values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        url: { type: "string" },
        size: { type: "string" },
        count: { type: "string" },
        "serial-count": { type: "string" },
        inflight: { type: "string" },
        runs: { type: "string" },
        warmup: { type: "string" },
        "ack-timeout-ms": { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" }
      }
    })
    if (values.help === true) return { ok: false, error: "" }
    const config: AppendConfig = {
      size: positive("size", values.size, 256),
      count: positive("count", values.count, 50_000),
      serialCount: positive("serial-count", values["serial-count"], 5_000),
      inflight: positive("inflight", values.inflight, 1024),
      runs: positive("runs", values.runs, 5),
      warmup: positive("warmup", values.warmup, 2_000),
      ackTimeoutMs: positive("ack-timeout-ms", values["ack-timeout-ms"], 10_000)
    }
    return { ok: true, url: values.url, json: values.json === true, config }
  } catch (error) {
    return { ok: false, error: error instanceof Error ? error.message : String(error) }
  }
}

const natsVersion = (): string => {
  const pkg: unknown = createRequire(import.meta.url)("nats/package.json")
  const version = typeof pkg === "object" && pkg !== null && "version" in pkg ? pkg.version : undefined
  return typeof version === "string" ? version : "unknown"
}

/** Runs every variant `runs` times, interleaved, purging the stream before each run. */
const measure = async (
  nc: NatsConnection,
  stream: string,
  variants: ReadonlyArray<Variant>,
  config: AppendConfig
): Promise<ReadonlyArray<VariantRuns>> => {
  const jsm = await nc.jetstreamManager()
  for (const variant of variants) {
    await jsm.streams.purge(stream)
    const warm = await variant.run("warm", Math.min(config.warmup, variant.count))
    if (warm.failed > 0) console.error(`warm-up of ${variant.id}: ${warm.failed} failed (${warm.errors.join(" | ")})`)
  }
  const runs = new Map<Variant, Array<RunResult>>(variants.map((variant) => [variant, []]))
  for (let round = 1; round <= config.runs; round++) {
    const progress: Array<string> = []
    for (const variant of variants) {
      await jsm.streams.purge(stream)
      const timed = await variant.run(`r${round}`, variant.count)
      const stored = (await jsm.streams.info(stream)).state.messages
      const run: RunResult = { ...timed, stored }
      runs.get(variant)?.push(run)
      progress.push(`${variant.id} ${isClean(run) ? formatRate(rate(run)) : "FAILED"}`)
    }
    console.error(`round ${round}/${config.runs}: ${progress.join(", ")} msgs/s`)
  }
  await jsm.streams.purge(stream)
  return variants.map((variant) => ({
    id: variant.id,
    label: variant.label,
    countPerRun: variant.count,
    runs: runs.get(variant) ?? []
  }))
}

/** The `append` benchmark; resolves with the process exit status. */
export const runAppend = async (argv: ReadonlyArray<string>): Promise<number> => {
  const parsed = parseAppendArgs(argv)
  if (!parsed.ok) {
    if (parsed.error !== "") console.error(parsed.error)
    console.error(APPEND_USAGE)
    return parsed.error === "" ? 0 : 1
  }
  const { config } = parsed
  const started = performance.now()
  let server: NatsServerHandle | undefined
  const onSignal = () => void (server?.stop() ?? Promise.resolve()).finally(() => process.exit(130))
  process.once("SIGINT", onSignal)
  process.once("SIGTERM", onSignal)
  let admin: NatsConnection | undefined
  let variants: ReadonlyArray<Variant> = []
  const suffix = randomBytes(4).toString("hex")
  const naming: Naming = { streamPrefix: `BENCH_${suffix.toUpperCase()}`, subjectRoot: `bench_${suffix}` }
  const stream = eventsStream(naming)
  try {
    if (parsed.url === undefined) server = await startNatsServer({ ownServer: true })
    const url = parsed.url ?? server?.url ?? ""
    console.error(`append benchmark: ${server === undefined ? "using" : "started"} ${url}, stream ${stream}`)
    admin = await connect({ servers: url, name: "codeq-bench-admin", noAsyncTraces: true })
    const definition = streamDefinitions(naming).find((d) => d.name === stream)
    if (definition === undefined) throw new Error(`no definition for ${stream}`)
    await provisionStream(admin, definition)
    variants = await createVariants({ url, naming, ...config })
    const results = await measure(admin, stream, variants, config)
    const report = buildReport(
      config,
      { url, version: admin.info?.version ?? "unknown", own: server !== undefined, stream, storage: String(definition.storage) },
      { node: process.version, cpus: cpus().length, nats: natsVersion() },
      results,
      (performance.now() - started) / 1000
    )
    console.log(parsed.json ? JSON.stringify(report, null, 2) : renderReport(report))
    return report.allClean ? 0 : 1
  } catch (error) {
    console.error(`append benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`)
    return 1
  } finally {
    await Promise.allSettled(variants.map((variant) => variant.close()))
    if (admin !== undefined) {
      // On an external server, leave nothing behind; our own server's store is deleted with it.
      if (server === undefined) await (await admin.jetstreamManager()).streams.delete(stream).catch(() => false)
      await admin.close()
    }
    await server?.stop()
    process.off("SIGINT", onSignal)
    process.off("SIGTERM", onSignal)
  }
}
