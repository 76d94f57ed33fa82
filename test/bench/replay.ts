/**
 * `npm run bench -- replay`: how fast does `codeq replay --audit` read and audit the log, and in
 * how much memory? DESIGN §7 asks for a million events well under a minute; the target here is
 * ≥ 250,000 events/s and a peak RSS under 300 MB on this 2-core machine.
 *
 * A private nats-server is filled with realistic events (replayFill.ts), then the replay runs in
 * a child process of its own — the library call `codeq replay` makes — so its peak RSS is the
 * replay's alone, not the filler's. The child runs the build in dist/ (made first, from these
 * sources), as `codeq replay` does. It reports events, time, CPU and peak RSS; `--profile` writes
 * a V8 CPU profile of it.
 */
import { fork } from "node:child_process"
import { randomBytes } from "node:crypto"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { connect } from "nats"
import { streamDefinitions, type Naming } from "../../streams/definitions.js"
import { provisionStreams } from "../../src/eventlog/provision.js"
import { startNatsServer, type NatsServerHandle } from "../../src/testing/natsServer.js"
import { fillEventLog } from "./replayFill.js"
import { buildDist } from "../support/build.js"

/** What the measured process (replayChild.mjs) reports. */
export interface ChildReport {
  readonly events: number
  readonly tasks: number
  readonly elapsedMs: number
  readonly cpuMs: number
  readonly maxRssKb: number
  readonly problems: number
  readonly reader: string
}

export const REPLAY_BENCH_USAGE = `usage: npm run bench -- replay [options]
  --events N        events to fill the log with (default 1000000)
  --url URL         use this server's log as it is (no fill; --prefix and --root name the streams)
  --prefix P        stream prefix with --url (default CODEQ)
  --root R          subject root with --url (default codeq)
  --detail D[,D…]   ids (an audit: ids and times, the default), spans (every attribute rebuilt)
                    or read (the log read into records, nothing more: the ceiling); a list
                    runs each in turn on the same log
  --reader R        auto (the wire reader where it can) or nats (nats.js only)
  --batch N         events per pull request (default 20000)
  --runs N          replays of the same log (default 1)
  --profile DIR     write a V8 CPU profile of each replay to DIR
  --json            one JSON object per run instead of text`

const TARGET_RATE = 250_000
const TARGET_RSS_MB = 300

const positive = (name: string, raw: string | undefined, fallback: number): number => {
  if (raw === undefined) return fallback
  const n = Number(raw.replace(/_/g, ""))
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer, got ${raw}`)
  return n
}

const runChild = (args: ReadonlyArray<string>, profileDir: string | undefined): Promise<ChildReport> =>
  new Promise((resolve, reject) => {
    // Node itself, without this process's test loader: the child is plain JavaScript on dist/.
    const child = fork(fileURLToPath(new URL("./replayChild.mjs", import.meta.url)), [...args], {
      execArgv: profileDir === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${profileDir}`],
      stdio: ["ignore", "inherit", "inherit", "ipc"]
    })
    let report: ChildReport | undefined
    child.on("message", (message) => (report = message as ChildReport))
    child.on("error", reject)
    child.on("exit", (code) => (report !== undefined ? resolve(report) : reject(new Error(`the replay process exited with ${code} before reporting`))))
  })

export const runReplayBench = async (argv: ReadonlyArray<string>): Promise<number> => {
  let values: Record<string, string | boolean | undefined>
  try {
    values = parseArgs({
      args: [...argv],
      strict: true,
      options: {
        events: { type: "string" },
        url: { type: "string" },
        prefix: { type: "string" },
        root: { type: "string" },
        detail: { type: "string" },
        reader: { type: "string" },
        batch: { type: "string" },
        runs: { type: "string" },
        profile: { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" }
      }
    }).values
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : String(error)}\n${REPLAY_BENCH_USAGE}`)
    return 1
  }
  if (values.help === true) {
    console.log(REPLAY_BENCH_USAGE)
    return 0
  }
  const str = (key: string) => (typeof values[key] === "string" ? (values[key] as string) : undefined)
  const events = positive("events", str("events"), 1_000_000)
  const runs = positive("runs", str("runs"), 1)
  const batch = positive("batch", str("batch"), 20_000)
  const details = (str("detail") ?? "ids").split(",")
  const reader = str("reader") ?? "auto"
  for (const detail of details) if (detail !== "ids" && detail !== "spans" && detail !== "read") throw new Error(`--detail must be ids, spans or read, got ${detail}`)
  if (reader !== "auto" && reader !== "nats") throw new Error(`--reader must be auto or nats, got ${reader}`)
  const json = values.json === true
  const say = (text: string) => (json ? undefined : console.log(text))

  // The replay measured is the build `codeq replay` runs: make it from the sources first.
  say("building dist/ (the code measured) …")
  buildDist()
  let server: NatsServerHandle | undefined
  const url = str("url")
  let naming: Naming = { streamPrefix: str("prefix") ?? "CODEQ", subjectRoot: str("root") ?? "codeq" }
  try {
    let natsUrl = url
    if (natsUrl === undefined) {
      server = await startNatsServer({ ownServer: true })
      natsUrl = server.url
      const id = randomBytes(3).toString("hex")
      naming = { streamPrefix: `BENCH${id.toUpperCase()}`, subjectRoot: `bench${id}` }
      const nc = await connect({ servers: natsUrl, noAsyncTraces: true })
      await provisionStreams(nc, streamDefinitions(naming))
      const tty = process.stderr.isTTY === true
      const fill = await fillEventLog(nc, naming, events, (done) => {
        if (tty) process.stderr.write(`\rfilling: ${done.toLocaleString("en-US")}/${events.toLocaleString("en-US")} events`)
      })
      if (tty) process.stderr.write("\n")
      await nc.close()
      say(`filled ${fill.events.toLocaleString("en-US")} events (${fill.tasks.toLocaleString("en-US")} tasks) in ${(fill.elapsedMs / 1000).toFixed(1)} s (${Math.round(fill.events / (fill.elapsedMs / 1000)).toLocaleString("en-US")} events/s) on ${natsUrl}`)
    }
    let ok = true
    for (const detail of details) {
      for (let run = 1; run <= runs; run++) {
        const report = await runChild([natsUrl, naming.streamPrefix, naming.subjectRoot, detail, reader, String(batch)], str("profile"))
        const rate = report.events / (report.elapsedMs / 1000)
        const rssMb = report.maxRssKb / 1024
        const pass = rate >= TARGET_RATE && rssMb < TARGET_RSS_MB && report.problems === 0
        if (detail === "ids") ok &&= pass
        if (json) console.log(JSON.stringify({ detail, run, ...report, eventsPerSecond: Math.round(rate), peakRssMb: Math.round(rssMb) }))
        else
          say(
            [
              `${detail === "read" ? "read only" : detail === "spans" ? "replay, every span rebuilt" : "replay --audit"} (detail ${detail}, ${report.reader} reader, batch ${batch}), run ${run}/${runs}:`,
              `  ${report.events.toLocaleString("en-US")} events, ${report.tasks.toLocaleString("en-US")} tasks in ${(report.elapsedMs / 1000).toFixed(2)} s: ${Math.round(rate).toLocaleString("en-US")} events/s (target ≥ ${TARGET_RATE.toLocaleString("en-US")})`,
              `  CPU ${(report.cpuMs / 1000).toFixed(2)} s (${((report.cpuMs / report.elapsedMs) * 100).toFixed(0)} % of a core), peak RSS ${rssMb.toFixed(0)} MB (target < ${TARGET_RSS_MB} MB), audit problems ${report.problems}`,
              `  ${detail !== "ids" ? "(for comparison)" : pass ? "meets both targets" : "MISSES a target"}`
            ].join("\n")
          )
      }
    }
    return ok ? 0 : 1
  } finally {
    await server?.stop()
  }
}
