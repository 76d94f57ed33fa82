/**
 * Starts a throwaway NATS JetStream server for tests, benchmarks and fault drills.
 *
 * Order of preference: `NATS_URL` (an existing server, never stopped by us), the `nats-server`
 * binary on PATH or in /usr/sbin (a child process on a free loopback port with a temp store dir),
 * then testcontainers when a Docker engine answers. Each call gets its own server, so a test file
 * can kill it, restart it on the same store, or build a cluster without touching anyone else.
 */
import { spawn, type ChildProcess } from "node:child_process"
import { existsSync } from "node:fs"
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { delimiter, join } from "node:path"

/** A running server and how to reach and stop it. */
export interface NatsServerHandle {
  /** `nats://host:port` */
  readonly url: string
  readonly port: number
  /** JetStream store directory, or undefined when the server is not ours. */
  readonly storeDir: string | undefined
  /** The server process's pid while it runs, undefined when the server is not ours (benchmarks read its CPU time). */
  readonly pid: number | undefined
  /** SIGKILL the process (store kept) — for fault tests. Resolves when it has exited. */
  kill(): Promise<void>
  /** Start the server again on the same port and store after `kill`. */
  restart(): Promise<void>
  /**
   * SIGSTOP: the server stops answering (requests in flight get no reply), connections stay up.
   * Resolves once every thread of the process is stopped: a signal sent right after a `resume`
   * was seen to leave the server answering requests for a few milliseconds more.
   */
  pause(): Promise<void>
  /** SIGCONT after `pause`: what arrived meanwhile is processed. */
  resume(): void
  /** Stop the server and delete its store. Safe to call twice. */
  stop(): Promise<void>
}

export interface NatsServerOptions {
  /** Extra command-line arguments for nats-server. */
  readonly args?: ReadonlyArray<string>
  /** Use this port instead of a free one. */
  readonly port?: number
  /** Ignore NATS_URL even when it is set (fault tests need a server they can kill). */
  readonly ownServer?: boolean
}

/** Finds a free TCP port on 127.0.0.1. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.on("error", reject)
    srv.listen(0, "127.0.0.1", () => {
      const address = srv.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      srv.close(() => resolve(port))
    })
  })

/** The `nats-server` binary on PATH or in the usual sbin/bin directories; undefined when none. */
export const findNatsServerBinary = (): string | undefined => {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/sbin", "/usr/local/sbin", "/usr/bin"]
  for (const dir of dirs) {
    if (dir === "") continue
    const candidate = join(dir, "nats-server")
    if (existsSync(candidate)) return candidate
  }
  return undefined
}

/** Resolves once a spawned nats-server says it is ready; rejects with its output when it exits first. */
export const waitForNatsReady = (child: ChildProcess, timeoutMs: number): Promise<void> =>
  new Promise((resolve, reject) => {
    let output = ""
    const timer = setTimeout(() => {
      cleanup()
      reject(new Error(`nats-server did not become ready in ${timeoutMs} ms:\n${output}`))
    }, timeoutMs)
    const onData = (chunk: Buffer) => {
      output += chunk.toString()
      if (output.includes("Server is ready")) {
        cleanup()
        resolve()
      }
    }
    const onExit = (code: number | null) => {
      cleanup()
      reject(new Error(`nats-server exited with ${code} before it was ready:\n${output}`))
    }
    const cleanup = () => {
      clearTimeout(timer)
      child.stderr?.off("data", onData)
      child.stdout?.off("data", onData)
      child.off("exit", onExit)
    }
    child.stderr?.on("data", onData)
    child.stdout?.on("data", onData)
    child.once("exit", onExit)
  })

const exited = (child: ChildProcess): Promise<void> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => child.once("exit", () => resolve()))

const startProcess = async (binary: string, options: NatsServerOptions): Promise<NatsServerHandle> => {
  const port = options.port ?? (await freePort())
  const storeDir = await mkdtemp(join(tmpdir(), "codeq-nats-"))
  const args = ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", storeDir, ...(options.args ?? [])]
  let child: ChildProcess | undefined
  const launch = async () => {
    const proc = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] })
    child = proc
    await waitForNatsReady(proc, 15_000)
    // Keep draining output so the pipe never fills and blocks the server.
    proc.stdout?.resume()
    proc.stderr?.resume()
  }
  await launch()
  let stopped = false
  const kill = async () => {
    if (child === undefined) return
    const current = child
    current.kill("SIGKILL")
    await exited(current)
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    get pid() {
      return child?.pid
    },
    kill,
    restart: launch,
    pause: async () => {
      if (child?.pid === undefined) return
      child.kill("SIGSTOP")
      await allThreadsStopped(child.pid)
    },
    resume: () => void child?.kill("SIGCONT"),
    stop: async () => {
      if (stopped) return
      stopped = true
      await kill()
      await rm(storeDir, { recursive: true, force: true })
    }
  }
}

const startContainer = async (): Promise<NatsServerHandle> => {
  const { NatsContainer } = await import("@testcontainers/nats")
  const container = await new NatsContainer("nats:2.10").withJetStream().start()
  const port = container.getMappedPort(4222)
  const url = `nats://${container.getHost()}:${port}`
  const unsupported = () => Promise.reject(new Error("kill/restart is not supported for a testcontainers server"))
  const cannot = () => {
    throw new Error("pause/resume is not supported for a testcontainers server")
  }
  return { url, port, storeDir: undefined, pid: undefined, kill: unsupported, restart: unsupported, pause: cannot, resume: cannot, stop: async () => void (await container.stop()) }
}

/** How long `pause` waits for the stop to take hold before it gives up. */
const PAUSE_DEADLINE_MS = 5_000

/** The scheduler state letter of each thread of `pid` (Linux /proc; `T` is stopped). */
const threadStates = async (pid: number): Promise<string[]> => {
  const dir = `/proc/${pid}/task`
  const stats = await Promise.all((await readdir(dir)).map((tid) => readFile(`${dir}/${tid}/stat`, "utf8").catch(() => "")))
  // The command name (field 2) is in parentheses and may hold anything: the state follows its end.
  return stats.filter((stat) => stat !== "").map((stat) => stat.charAt(stat.lastIndexOf(")") + 2))
}

/** Resolves once every thread of `pid` is stopped; rejects after PAUSE_DEADLINE_MS. */
const allThreadsStopped = async (pid: number): Promise<void> => {
  const deadline = Date.now() + PAUSE_DEADLINE_MS
  for (;;) {
    const states = await threadStates(pid)
    if (states.every((state) => state === "T" || state === "t")) return
    if (Date.now() > deadline) throw new Error(`nats-server ${pid} did not stop within ${PAUSE_DEADLINE_MS} ms of SIGSTOP (thread states ${states.join("")})`)
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
}

/** Starts (or points at) a JetStream-enabled NATS server for one test file. */
export const startNatsServer = async (options: NatsServerOptions = {}): Promise<NatsServerHandle> => {
  const external = process.env.NATS_URL
  if (external !== undefined && external !== "" && options.ownServer !== true) {
    const port = Number(new URL(external.replace(/^nats:/, "http:")).port || 4222)
    const unsupported = () => Promise.reject(new Error("cannot kill or restart the server named by NATS_URL"))
    const cannot = () => {
      throw new Error("cannot pause or resume the server named by NATS_URL")
    }
    return { url: external, port, storeDir: undefined, pid: undefined, kill: unsupported, restart: unsupported, pause: cannot, resume: cannot, stop: async () => {} }
  }
  const binary = findNatsServerBinary()
  if (binary !== undefined) return startProcess(binary, options)
  return startContainer()
}
