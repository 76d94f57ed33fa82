/**
 * The processes of one e2e run, seen from the orchestrator: the broker (`codeq serve`, spawned as
 * node itself so its pid is the broker's) and the load processes (producer, workers, raw client),
 * forked with an IPC channel. Every process is registered in a `ProcessGroup`, and the run's
 * `finally` kills the whole group: a benchmark that fails half way must never leave a broker or a
 * worker running on a shared machine. Output goes to a log file per process, never to a pipe the
 * orchestrator would have to drain while it measures.
 */
import { fork, spawn, type ChildProcess } from "node:child_process"
import { closeSync, openSync } from "node:fs"
import { readFile } from "node:fs/promises"
import { fileURLToPath } from "node:url"
import type { ChildMessage, ParentMessage } from "./ipc.js"

/** `node --import tsx`: how every TypeScript child is started. */
export const TSX_ARGS: ReadonlyArray<string> = ["--import", "tsx"]
/**
 * Extra node flags of one process of a run (BENCHMARKS.md, "Profiles"): `--cpu-prof` into
 * `$E2E_CPU_PROF/<process name>/` when that is set, and the flags in `$E2E_NODE_ARGS_<NAME>`
 * (the process name upper-cased, `-` as `_`: `E2E_NODE_ARGS_BROKER`, `E2E_NODE_ARGS_WORKER_1`),
 * e.g. `--trace-gc`; nothing otherwise.
 */
const nodeArgs = (name: string): Array<string> => {
  const dir = process.env["E2E_CPU_PROF"]
  const extra = (process.env[`E2E_NODE_ARGS_${name.replace(/-/g, "_").toUpperCase()}`] ?? "").split(" ").filter((arg) => arg !== "")
  return [...extra, ...(dir === undefined || dir === "" ? [] : ["--cpu-prof", `--cpu-prof-dir=${dir}/${name}`])]
}

const exitedPromise = (child: ChildProcess): Promise<void> =>
  child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once("exit", () => resolve()))

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** One child process and the file its output goes to. */
export class Proc {
  private readonly listeners = new Set<(message: ChildMessage) => void>()
  private readonly exited: Promise<void>
  private failure: string | undefined

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    readonly logFile: string
  ) {
    this.exited = exitedPromise(child)
    child.on("message", (raw: unknown) => {
      const message = raw as ChildMessage
      if (message.type === "failed") this.failure = message.message
      for (const listener of this.listeners) listener(message)
    })
  }

  get pid(): number {
    return this.child.pid ?? -1
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  send(message: ParentMessage): void {
    if (this.running && this.child.connected) this.child.send(message)
  }

  onMessage(listener: (message: ChildMessage) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /** Resolves with the next message of `type`; rejects when the child fails, exits or time runs out. */
  waitFor<T extends ChildMessage["type"]>(type: T, timeoutMs: number): Promise<Extract<ChildMessage, { type: T }>> {
    return new Promise((resolve, reject) => {
      const done = (error: Error | undefined, message?: Extract<ChildMessage, { type: T }>) => {
        clearTimeout(timer)
        off()
        this.child.off("exit", onExit)
        if (error !== undefined) reject(error)
        else if (message !== undefined) resolve(message)
      }
      const timer = setTimeout(() => done(new Error(`${this.name}: no '${type}' within ${timeoutMs} ms (log: ${this.logFile})`)), timeoutMs)
      const off = this.onMessage((message) => {
        if (message.type === type) done(undefined, message as Extract<ChildMessage, { type: T }>)
        else if (message.type === "failed") done(new Error(`${this.name} failed: ${message.message}`))
      })
      const onExit = (code: number | null, signal: string | null) =>
        done(new Error(`${this.name} exited (${signal ?? code}) before '${type}'${this.failure !== undefined ? `: ${this.failure}` : ""} (log: ${this.logFile})`))
      if (!this.running) onExit(this.child.exitCode, this.child.signalCode)
      else this.child.once("exit", onExit)
    })
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  async kill(graceMs = 3_000): Promise<void> {
    if (!this.running) return
    this.child.kill("SIGTERM")
    const gone = await Promise.race([this.exited.then(() => true), sleep(graceMs).then(() => false)])
    if (!gone && this.running) {
      this.child.kill("SIGKILL")
      await this.exited
    }
  }

  /** The last lines of the process's log, for an error report. */
  async tail(lines = 20): Promise<string> {
    const text = await readFile(this.logFile, "utf8").catch(() => "")
    return text.trimEnd().split("\n").slice(-lines).join("\n")
  }
}

export interface StartOptions {
  readonly name: string
  readonly logFile: string
  readonly env?: NodeJS.ProcessEnv
}

/** Every process a run started; `killAll` in the run's `finally`. */
export class ProcessGroup {
  /** Groups not yet killed, for a Ctrl-C in the middle of a run. */
  static readonly active = new Set<ProcessGroup>()
  private readonly procs: Array<Proc> = []

  constructor() {
    ProcessGroup.active.add(this)
  }

  /** Forks a bench child script (a file beside this one) with its config as JSON in argv. */
  fork(script: string, config: unknown, options: StartOptions): Proc {
    const path = fileURLToPath(new URL(script, import.meta.url))
    const fd = openSync(options.logFile, "a")
    try {
      const child = fork(path, [JSON.stringify(config)], {
        execArgv: [...TSX_ARGS, ...nodeArgs(options.name)],
        env: options.env ?? process.env,
        stdio: ["ignore", fd, fd, "ipc"],
        serialization: "advanced"
      })
      return this.add(new Proc(options.name, child, options.logFile))
    } finally {
      closeSync(fd)
    }
  }

  /** Spawns node with `args` (no IPC): the broker. */
  spawnNode(args: ReadonlyArray<string>, options: StartOptions): Proc {
    const fd = openSync(options.logFile, "a")
    try {
      const child = spawn(process.execPath, [...nodeArgs(options.name), ...args], { env: options.env ?? process.env, stdio: ["ignore", fd, fd] })
      return this.add(new Proc(options.name, child, options.logFile))
    } finally {
      closeSync(fd)
    }
  }

  private add(proc: Proc): Proc {
    this.procs.push(proc)
    return proc
  }

  /** Kills every process still running, all at once, each with its own grace period. */
  async killAll(graceMs = 3_000): Promise<void> {
    await Promise.allSettled(this.procs.map((proc) => proc.kill(graceMs)))
    ProcessGroup.active.delete(this)
  }

  /** Kills every process of every group still active. */
  static async killEverything(graceMs = 1_000): Promise<void> {
    await Promise.allSettled([...ProcessGroup.active].map((group) => group.killAll(graceMs)))
  }
}

/** The environment for a codeq process: ours, without any inherited codeq, NATS or OTEL settings. */
export const cleanEnv = (extra: Record<string, string>): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith("CODEQ_") || key.startsWith("OTEL_") || key === "NATS_URL") continue
    env[key] = value
  }
  return { ...env, ...extra }
}

/** VmRSS of a process in bytes, from /proc; undefined when it is gone or unreadable. */
export const readRss = async (pid: number): Promise<number | undefined> => {
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => undefined)
  const kb = status === undefined ? undefined : /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1]
  return kb === undefined ? undefined : Number(kb) * 1024
}

/** Samples a process's RSS every `intervalMs` until stopped. */
export class RssSampler {
  readonly samples: Array<{ readonly at: number; readonly bytes: number }> = []
  private readonly timer: NodeJS.Timeout

  constructor(
    private readonly pid: number,
    intervalMs = 250
  ) {
    this.timer = setInterval(() => void this.sample(), intervalMs)
  }

  async sample(): Promise<number | undefined> {
    const bytes = await readRss(this.pid)
    if (bytes !== undefined) this.samples.push({ at: Date.now(), bytes })
    return bytes
  }

  /** The highest sample between two instants (inclusive). */
  peak(from = 0, to = Number.POSITIVE_INFINITY): number | undefined {
    const inRange = this.samples.filter((s) => s.at >= from && s.at <= to).map((s) => s.bytes)
    return inRange.length === 0 ? undefined : Math.max(...inRange)
  }

  stop(): void {
    clearInterval(this.timer)
  }
}
