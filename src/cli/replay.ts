/**
 * `codeq replay`: the command line over the replay library — connect, read the selection, and
 * write each task's trace as a tree, JSON lines or OTLP/JSON, re-export it over OTLP gRPC, and/or
 * audit it. Exit status: 0 done, 1 failed (an export too), 2 wrong usage, 3 the audit found
 * problems, 130 interrupted (unless following, where SIGINT is how a run ends).
 */
import { once } from "node:events"
import { BrokerConfig } from "../config/config.js"
import { effectiveVariables, loadConfig } from "../config/configFile.js"
import { closeConnection } from "../eventlog/connection.js"
import { resolveTracingConfig, TRACING_DEFAULTS } from "../tracing/config.js"
import { otlpGrpcExporter } from "../tracing/setup.js"
import {
  AuditTally,
  ProgressBar,
  SpanShipper,
  jsonLines,
  otlpJsonRequest,
  renderAuditSummary,
  renderTree,
  replayLog,
  tuneHeapForReplay,
  wireTargetOf,
  type ReplaySpan,
  type TaskAudit,
  type TaskTrace
} from "../replay/index.js"
import { EXIT } from "./args.js"
import { connectForCommand } from "./connect.js"
import { parseReplayArgs, type ReplayArgs } from "./replayArgs.js"

/** Exit status of a run stopped by SIGINT (128 + 2), unless it was following. */
const INTERRUPTED = 130

/** Spans per OTLP/JSON line. */
const OTLP_JSON_SPANS_PER_LINE = 1_000

/** Writes to stdout, waiting when the pipe is full (a million spans must not pile up in memory). */
const write = async (text: string): Promise<void> => {
  if (!process.stdout.write(text)) await once(process.stdout, "drain")
}

const serviceNameOf = (config: BrokerConfig): string => {
  try {
    return resolveTracingConfig(config.tracing).serviceName
  } catch {
    return TRACING_DEFAULTS.serviceName
  }
}

const run = async (args: ReplayArgs): Promise<number> => {
  tuneHeapForReplay()
  const config = await loadConfig(BrokerConfig, await effectiveVariables())
  const urls = config.natsUrl.split(",").map((url) => url.trim())
  const { nc } = await connectForCommand(config.natsUrl, { name: "codeq-replay" })
  const serviceName = serviceNameOf(config)
  const format = args.format ?? (args.audit || args.export !== undefined ? undefined : "tree")
  const detail = format !== undefined || args.export !== undefined ? "spans" : "ids"
  const tally = new AuditTally()
  const shipper =
    args.export === undefined
      ? undefined
      : new SpanShipper(
          otlpGrpcExporter({ ...resolveTracingConfig({}, {}), enabled: true, serviceName, endpoint: args.export.endpoint, insecure: args.export.insecure }, 10_000),
          serviceName
        )
  let otlpBuffer: Array<ReplaySpan> = []
  const flushOtlp = async () => {
    if (otlpBuffer.length === 0) return
    const line = `${JSON.stringify(otlpJsonRequest(otlpBuffer, serviceName))}\n`
    otlpBuffer = []
    await write(line)
  }
  const progress = new ProgressBar(process.stderr, args.follow)
  const controller = new AbortController()
  let interrupted = false
  const onSigint = () => {
    interrupted = true
    controller.abort()
  }
  process.once("SIGINT", onSigint)

  const handle = async (trace: TaskTrace | TaskAudit) => {
    tally.add(trace)
    if (args.audit && args.follow && trace.problems.length > 0) {
      progress.clear()
      const lines = trace.problems.map((p) => `problem: task ${p.tenant}/${p.taskId}${p.seq === undefined ? "" : ` seq ${p.seq}`} [${p.rule}]: ${p.message}\n`)
      if (format === "otlp-json") process.stderr.write(lines.join(""))
      else await write(lines.join(""))
    }
    if (typeof trace.spans === "number") return
    const full = trace as TaskTrace
    if (format === "tree") {
      progress.clear()
      await write(`${renderTree(full)}\n\n`)
    } else if (format === "jsonl") {
      const lines = jsonLines(full)
      if (lines.length > 0) await write(`${lines.join("\n")}\n`)
    } else if (format === "otlp-json") {
      otlpBuffer.push(...full.spans)
      if (otlpBuffer.length >= OTLP_JSON_SPANS_PER_LINE) await flushOtlp()
    }
    if (shipper !== undefined) await shipper.add(full.spans)
  }

  let exit: number = EXIT.ok
  try {
    const result = await replayLog(
      { nc, wire: wireTargetOf(nc, urls) },
      config.naming,
      { filter: args.filter, detail, follow: args.follow, signal: controller.signal, audit: { skewMs: args.skewMs }, onProgress: (p) => progress.update(p) },
      handle
    )
    progress.clear()
    await flushOtlp()
    if (shipper !== undefined) {
      await shipper.close()
      process.stderr.write(`exported ${shipper.exported} spans to ${args.export?.endpoint ?? ""}${shipper.failed > 0 ? `; ${shipper.failed} failed: ${shipper.lastError ?? ""}` : ""}\n`)
      if (shipper.failed > 0) exit = EXIT.failed
    }
    if (args.audit) {
      const summary = tally.summary()
      if (format === "jsonl") await write(`${JSON.stringify({ audit: summary })}\n`)
      else if (format === "otlp-json") process.stderr.write(`${renderAuditSummary(summary)}\n`)
      else await write(`${renderAuditSummary(summary)}\n`)
      if (summary.problems > 0) exit = EXIT.problems
    }
    if (process.stderr.isTTY === true) {
      const seconds = result.elapsedMs / 1000
      process.stderr.write(`replayed ${result.events} events of ${result.tasks} tasks in ${seconds.toFixed(2)} s (${Math.round(result.events / Math.max(seconds, 0.001))} events/s, ${result.reader} reader)\n`)
    }
    if (interrupted && !args.follow && exit === EXIT.ok) exit = INTERRUPTED
  } finally {
    process.off("SIGINT", onSigint)
    await closeConnection(nc, true)
  }
  return exit
}

/** `codeq replay <argv>`: its exit status. Bad arguments throw a UsageError naming the option. */
export const replay = async (argv: ReadonlyArray<string>): Promise<number> => {
  const args = parseReplayArgs(argv)
  return args === undefined ? EXIT.ok : run(args)
}
