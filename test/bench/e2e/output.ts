/**
 * Where a run's numbers go: the console (a plain-text table), `bench-results/e2e-<time>.json`
 * (git commit, options, host and every raw number, for comparison across commits; the folder is
 * git-ignored) and the results section of `BENCHMARKS.md`, rewritten between its markers so the
 * method above it stays as written.
 */
import { execFileSync } from "node:child_process"
import { existsSync } from "node:fs"
import { mkdir, readFile, writeFile } from "node:fs/promises"
import { cpus } from "node:os"
import { join, relative } from "node:path"
import { fileURLToPath } from "node:url"
import { renderTable } from "../stats.js"
import type { E2eOptions } from "./options.js"
import { failedRuns, TABLE_HEADER, tableRows, type AnyRun, type Row } from "./summary.js"

export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url))
export const RESULTS_DIR = join(REPO_ROOT, "bench-results")
const MARKDOWN = join(REPO_ROOT, "BENCHMARKS.md")
export const BEGIN_MARKER = "<!-- e2e-results:begin (written by npm run bench -- e2e; do not edit by hand) -->"
export const END_MARKER = "<!-- e2e-results:end -->"

const run = (file: string, args: ReadonlyArray<string>): string | undefined => {
  try {
    return execFileSync(file, [...args], { cwd: REPO_ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim()
  } catch {
    return undefined
  }
}

const packageVersion = async (name: string): Promise<string> => {
  const text = await readFile(join(REPO_ROOT, "node_modules", name, "package.json"), "utf8").catch(() => "{}")
  const version = (JSON.parse(text) as { version?: unknown }).version
  return typeof version === "string" ? version : "unknown"
}

export interface RunInfo {
  readonly command: string
  readonly startedAt: string
  readonly finishedAt: string
  readonly totalSeconds: number
  readonly git: { readonly commit: string; readonly dirty: boolean }
  readonly host: { readonly node: string; readonly cpus: number; readonly natsServer: string; readonly nats: string; readonly bullmq: string; readonly undici: string; readonly redis: string }
}

export const runInfo = async (argv: ReadonlyArray<string>, started: Date, options: E2eOptions): Promise<RunInfo> => {
  const natsServer = run("nats-server", ["--version"]) ?? run("/usr/sbin/nats-server", ["--version"]) ?? "unknown"
  const redis = run("redis-cli", ["-h", options.redis.host, "-p", String(options.redis.port), "info", "server"])
  return {
    command: ["npm run bench -- e2e", ...argv].join(" "),
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    totalSeconds: Math.round((Date.now() - started.getTime()) / 1000),
    git: { commit: run("git", ["rev-parse", "HEAD"]) ?? "unknown", dirty: (run("git", ["status", "--porcelain", "--untracked-files=no"]) ?? "") !== "" },
    host: {
      node: process.version,
      cpus: cpus().length,
      natsServer: natsServer.replace(/^nats-server:\s*/, ""),
      nats: await packageVersion("nats"),
      bullmq: await packageVersion("bullmq"),
      undici: await packageVersion("undici"),
      redis: /redis_version:(\S+)/.exec(redis ?? "")?.[1] ?? "unknown"
    }
  }
}

export interface Report {
  readonly benchmark: "e2e"
  readonly info: RunInfo
  readonly options: E2eOptions
  readonly table: { readonly header: ReadonlyArray<string>; readonly rows: ReadonlyArray<Row> }
  readonly failed: ReadonlyArray<string>
  readonly notes: ReadonlyArray<string>
  readonly runs: ReadonlyArray<AnyRun>
}

export const buildReport = (info: RunInfo, options: E2eOptions, runs: ReadonlyArray<AnyRun>, notes: ReadonlyArray<string>): Report => ({
  benchmark: "e2e",
  info,
  options,
  table: { header: [...TABLE_HEADER], rows: tableRows(runs, options.catchupTimeoutS) },
  failed: failedRuns(runs),
  notes,
  runs
})

const shortCommit = (info: RunInfo) => `${info.git.commit.slice(0, 10)}${info.git.dirty ? " (with uncommitted changes)" : ""}`

const heading = (report: Report) =>
  `${report.info.startedAt}, commit ${shortCommit(report.info)}: \`${report.info.command}\` — ` +
  `${report.options.rounds} round(s), ${report.options.tasks.toLocaleString("en-US")} tasks, ${report.options.payload}-byte payloads, ` +
  `${report.options.workers} worker process(es) × ${report.options.concurrency}; Node ${report.info.host.node}, ${report.info.host.cpus} CPUs, ` +
  `nats-server ${report.info.host.natsServer}, nats.js ${report.info.host.nats}, BullMQ ${report.info.host.bullmq}, Redis ${report.info.host.redis}`

const trailer = (report: Report): ReadonlyArray<string> => [
  ...(report.failed.length === 0 ? ["Every run completed every task exactly once."] : ["Runs that do not count:", ...report.failed.map((line) => `- ${line}`)]),
  ...report.notes.map((note) => `Note: ${note}`)
]

export const renderText = (report: Report): string => [heading(report), "", renderTable(report.table.header, report.table.rows), "", ...trailer(report)].join("\n")

const escapeCell = (cell: string) => cell.replace(/\|/g, "\\|")

export const renderMarkdown = (report: Report, jsonPath: string): string =>
  [
    `Last run: ${heading(report)}. Raw numbers: \`${relative(REPO_ROOT, jsonPath)}\` (not committed).`,
    "",
    `| ${report.table.header.join(" | ")} |`,
    `|${report.table.header.map((_, i) => (i === 0 || i >= 4 ? "---" : "---:")).join("|")}|`,
    ...report.table.rows.map((cells) => `| ${cells.map(escapeCell).join(" | ")} |`),
    "",
    ...trailer(report)
  ].join("\n")

/** Writes the JSON report; resolves with its path. */
export const writeJson = async (report: Report, stamp: string): Promise<string> => {
  await mkdir(RESULTS_DIR, { recursive: true })
  const path = join(RESULTS_DIR, `e2e-${stamp}.json`)
  await writeFile(path, `${JSON.stringify(report, null, 2)}\n`)
  return path
}

/** Replaces the results section of BENCHMARKS.md (appends one when the markers are missing). */
export const updateMarkdown = async (report: Report, jsonPath: string): Promise<string> => {
  const text = existsSync(MARKDOWN) ? await readFile(MARKDOWN, "utf8") : "# Benchmarks\n"
  const section = `${BEGIN_MARKER}\n${renderMarkdown(report, jsonPath)}\n${END_MARKER}`
  const begin = text.indexOf(BEGIN_MARKER)
  const end = text.indexOf(END_MARKER)
  const next = begin >= 0 && end > begin ? `${text.slice(0, begin)}${section}${text.slice(end + END_MARKER.length)}` : `${text.trimEnd()}\n\n## Latest results\n\n${section}\n`
  await writeFile(MARKDOWN, next)
  return MARKDOWN
}
