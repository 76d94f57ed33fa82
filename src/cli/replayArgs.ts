/**
 * `codeq replay`'s command line, parsed and checked before anything connects: an unknown option,
 * a missing value or a bad one is a UsageError (exit 2) whose message names the option.
 */
import { checkCommand, checkTaskId, checkTenant } from "../domain/validation.js"
import { sanitizeEndpoint, TracingConfigError } from "../tracing/config.js"
import type { ReplayFilter } from "../replay/index.js"
import { UsageError, optionalString, parse, type CommandSpec } from "./args.js"

export const REPLAY: CommandSpec = {
  usage: "codeq replay [options]",
  summary: [
    "Rebuilds every task's spans from the event log alone — original trace and span ids, parents, names,",
    "attributes, start and end — and prints them, re-exports them over OTLP gRPC, and/or audits the chains.",
    "Without a selection, the whole log. Without --format, a tree (or only the summary with --audit).",
    "The service name of exported spans is OTEL_SERVICE_NAME or CODEQ_TRACING_SERVICE_NAME (default codeq).",
    "Exit status: 0 done, 1 failed (or an export failed), 2 wrong usage, 3 the audit found problems, 130 interrupted."
  ].join("\n"),
  flags: {
    task: { type: "string", help: "one task (UUID)" },
    trace: { type: "string", help: "the tasks on one trace (32 hex digits)" },
    tenant: { type: "string", help: "one tenant's tasks" },
    command: { type: "string", help: "tasks of one command" },
    since: { type: "string", help: "events stored at or after this instant (ISO 8601, e.g. 2024-05-01T12:00:00Z)" },
    until: { type: "string", help: "events stored at or before this instant (ISO 8601)" },
    "from-seq": { type: "string", help: "events from this stream sequence on" },
    "to-seq": { type: "string", help: "events up to this stream sequence" },
    format: { type: "string", help: "tree (one trace per block), jsonl (a span per line) or otlp-json (ExportTraceServiceRequest lines for a Collector's otlpjsonfile receiver)" },
    export: { type: "string", help: "send the spans to this OTLP gRPC endpoint (host:port) with their original ids and times" },
    insecure: { type: "boolean", help: "plaintext gRPC for --export (default TLS)" },
    audit: { type: "boolean", help: "check every chain (parents, one trace per task, trace headers, no duplicate span id, times in order), print a summary; exit 3 on a problem" },
    follow: { type: "boolean", help: "keep reading new events as they are appended, until SIGINT" },
    "skew-ms": { type: "string", help: "clock skew the time-order rule tolerates, in ms (default 0)" }
  }
}

export type ReplayFormat = "tree" | "jsonl" | "otlp-json"

export interface ReplayArgs {
  readonly filter: ReplayFilter
  /** Undefined when not given: the default depends on --audit and --export. */
  readonly format: ReplayFormat | undefined
  readonly export: { readonly endpoint: string; readonly insecure: boolean } | undefined
  readonly audit: boolean
  readonly follow: boolean
  readonly skewMs: number
}

const FORMATS: ReadonlyArray<ReplayFormat> = ["tree", "jsonl", "otlp-json"]
const TRACE_ID = /^[0-9a-f]{32}$/
const ISO = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/

const fail = (message: string): never => {
  throw new UsageError(message)
}

const instant = (flag: string, raw: string | undefined): Date | undefined => {
  if (raw === undefined) return undefined
  const ms = ISO.test(raw.trim()) ? Date.parse(raw.trim()) : Number.NaN
  return Number.isFinite(ms) ? new Date(ms) : fail(`--${flag} must be an ISO 8601 instant such as 2024-05-01T12:00:00Z (got ${JSON.stringify(raw)})`)
}

const sequence = (flag: string, raw: string | undefined): number | undefined => {
  if (raw === undefined) return undefined
  const n = /^\d{1,16}$/.test(raw.trim()) ? Number(raw.trim()) : Number.NaN
  return Number.isSafeInteger(n) && n >= 1 ? n : fail(`--${flag} must be a stream sequence, a whole number from 1 (got ${JSON.stringify(raw)})`)
}

/** The arguments of `codeq replay`; undefined when --help was asked for (and printed). */
export const parseReplayArgs = (argv: ReadonlyArray<string>, print?: (text: string) => void): ReplayArgs | undefined => {
  const parsed = parse(REPLAY, argv, print)
  if (parsed === undefined) return undefined
  if (parsed.positionals.length > 0) fail(`unexpected argument ${JSON.stringify(parsed.positionals[0])}: codeq replay takes only options (see codeq replay --help)`)
  const str = (name: string) => optionalString(parsed, name)
  const flag = (name: string) => parsed.flags[name] === true
  const task = str("task")
  if (task !== undefined && checkTaskId(task) !== undefined) fail(`--task must be a task id, a lowercase UUID (got ${JSON.stringify(task)})`)
  const trace = str("trace")
  if (trace !== undefined && (!TRACE_ID.test(trace) || /^0+$/.test(trace))) fail(`--trace must be a trace id: 32 lowercase hex digits, not all zero (got ${JSON.stringify(trace)})`)
  const tenant = str("tenant")
  if (tenant !== undefined && checkTenant(tenant) !== undefined) fail(`--tenant must be a tenant name: a lowercase letter, then 1-62 of a-z, 0-9 and - (got ${JSON.stringify(tenant)})`)
  const command = str("command")
  if (command !== undefined && checkCommand(command) !== undefined) fail(`--command must be a command name: 1-64 of A-Z, a-z, 0-9, _ and - (got ${JSON.stringify(command)})`)
  const since = instant("since", str("since"))
  const until = instant("until", str("until"))
  if (since !== undefined && until !== undefined && since > until) fail("--since must not be after --until")
  const fromSeq = sequence("from-seq", str("from-seq"))
  const toSeq = sequence("to-seq", str("to-seq"))
  if (fromSeq !== undefined && toSeq !== undefined && fromSeq > toSeq) fail("--from-seq must not be after --to-seq")
  const format = str("format")
  if (format !== undefined && !(FORMATS as ReadonlyArray<string>).includes(format)) fail(`--format must be one of ${FORMATS.join(", ")} (got ${JSON.stringify(format)})`)
  const exportTo = str("export")
  let endpoint: string | undefined
  if (exportTo !== undefined) {
    try {
      endpoint = sanitizeEndpoint(exportTo, "--export").hostPort
    } catch (error) {
      fail(error instanceof TracingConfigError ? error.message : `--export must be host:port (got ${JSON.stringify(exportTo)})`)
    }
  }
  if (flag("insecure") && endpoint === undefined) fail("--insecure applies to --export only")
  if (flag("follow") && (until !== undefined || toSeq !== undefined)) fail("--follow reads on without end: it cannot be combined with --until or --to-seq")
  const skewRaw = str("skew-ms")
  const skewMs = skewRaw === undefined ? 0 : /^\d+(\.\d+)?$/.test(skewRaw.trim()) ? Number(skewRaw) : fail(`--skew-ms must be a number of milliseconds, 0 or more (got ${JSON.stringify(skewRaw)})`)
  const filter: ReplayFilter = {
    ...(task !== undefined ? { taskId: task } : {}),
    ...(trace !== undefined ? { traceId: trace } : {}),
    ...(tenant !== undefined ? { tenant } : {}),
    ...(command !== undefined ? { command } : {}),
    ...(since !== undefined ? { since } : {}),
    ...(until !== undefined ? { until } : {}),
    ...(fromSeq !== undefined ? { fromSeq } : {}),
    ...(toSeq !== undefined ? { toSeq } : {})
  }
  return {
    filter,
    format: format as ReplayFormat | undefined,
    export: endpoint === undefined ? undefined : { endpoint, insecure: flag("insecure") },
    audit: flag("audit"),
    follow: flag("follow"),
    skewMs
  }
}
