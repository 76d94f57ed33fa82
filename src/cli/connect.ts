/**
 * The NATS connection of a codeq command, with errors a person can act on.
 *
 * `codeq serve` connects to NATS_URL (default nats://127.0.0.1:4222). When that address is on this
 * machine and nothing answers there, it starts an embedded `nats-server -js` on that port with its
 * data under `./.codeq/nats` — the two-command quickstart — and says so; with no binary either,
 * one line names the URL it tried and the command that installs a server. Every other failure
 * (JetStream off, credentials refused, a server that never answers) is one line naming the cause.
 */
import { spawn, type ChildProcess } from "node:child_process"
import { mkdir } from "node:fs/promises"
import { resolve } from "node:path"
import { findNatsServerBinary, waitForNatsReady } from "../testing/natsServer.js"
import { isJetStreamDisabled } from "../eventlog/errors.js"
import { checkJetStream, openConnection, type Connection } from "../eventlog/connection.js"
import { Duration, Schedule } from "effect"
import { RetryAborted, retryingPromise } from "../domain/retry.js"

/** A start-up failure with a one-line explanation; the CLI prints `codeq: <message>` and exits 1. */
export class StartError extends Error {
  override readonly name = "StartError"
}

export interface EmbeddedServer {
  readonly url: string
  readonly storeDir: string
  /** Stops the server (SIGTERM, then SIGKILL after 5 s); its data stays. */
  stop(): Promise<void>
}

export interface CommandConnection {
  readonly nc: Connection
  readonly url: string
  /** Set when this process started the server it is connected to. */
  readonly embedded: EmbeddedServer | undefined
}

const LOCAL_HOSTS = new Set(["127.0.0.1", "localhost", "::1", "[::1]"])

const codeOf = (error: unknown): string => (typeof error === "object" && error !== null && "code" in error ? String((error as { code: unknown }).code) : "")

/** Turns a connect failure into one line naming the URL and the cause. */
export const describeConnectError = (url: string, error: unknown): string => {
  const code = codeOf(error)
  if (code === "AUTHORIZATION_VIOLATION") return `NATS at ${url} refused the credentials (authorization violation); check the user, token or nkey in NATS_URL`
  if (code === "CONNECTION_REFUSED") return `nothing answers at ${url} (connection refused); start a NATS server with JetStream (nats-server -js) or set NATS_URL`
  if (code === "TIMEOUT" || code === "CONNECTION_TIMEOUT") return `NATS at ${url} did not answer in time`
  return `cannot connect to NATS at ${url}: ${error instanceof Error ? error.message : String(error)}`
}

const parseUrl = (url: string): URL | undefined => {
  try {
    return new URL(url.includes("://") ? url : `nats://${url}`)
  } catch {
    return undefined
  }
}

const stopChild = (child: ChildProcess) => async (): Promise<void> => {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((done) => child.once("exit", () => done()))
  child.kill("SIGTERM")
  const timer = setTimeout(() => child.kill("SIGKILL"), 5_000)
  await exited
  clearTimeout(timer)
}

/** Starts `nats-server -js` on `port` (loopback only) with its store in `storeDir`. */
export const startEmbeddedServer = async (port: number, storeDir: string): Promise<EmbeddedServer> => {
  const binary = findNatsServerBinary()
  if (binary === undefined)
    throw new StartError(`nothing answers at nats://127.0.0.1:${port} and no nats-server binary was found to start one; install it (Debian: apt-get install nats-server) or set NATS_URL`)
  await mkdir(storeDir, { recursive: true })
  const child = spawn(binary, ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", storeDir], { stdio: ["ignore", "pipe", "pipe"] })
  try {
    await waitForNatsReady(child, 15_000)
  } catch (error) {
    child.kill("SIGKILL")
    throw new StartError(`the embedded nats-server (${binary}) did not start: ${String(error).split("\n")[0]}`)
  }
  child.stdout?.resume()
  child.stderr?.resume()
  // Never outlive the process that started it.
  const kill = () => child.kill("SIGKILL")
  process.once("exit", kill)
  return {
    url: `nats://127.0.0.1:${port}`,
    storeDir,
    stop: async () => {
      process.off("exit", kill)
      await stopChild(child)()
    }
  }
}

export interface ConnectOptions {
  /** Connection name shown by the server's monitoring. */
  readonly name: string
  /** Start an embedded server when the URL is on this machine and nothing answers. */
  readonly embed?: boolean
  /** Where the embedded server keeps its data. Default `./.codeq/nats`. */
  readonly dataDir?: string
  /**
   * Keep trying, once a second, while nothing answers (refused, timed out, no such host) instead
   * of failing: `onWaiting` hears the reason once, and an abort ends the wait with a StartError.
   */
  readonly wait?: { readonly signal: AbortSignal; readonly onWaiting: (reason: string) => void }
}

/** A connect failure that may end by itself: the server is not up yet, or not reachable yet. */
const TRANSIENT = new Set(["CONNECTION_REFUSED", "TIMEOUT", "ENOTFOUND", "EAI_AGAIN", "ECONNRESET"])

/** Waiting for a server that is not up yet: a try a second, for as long as the caller waits. */
const WAIT_FOR_NATS = Schedule.spaced(Duration.seconds(1))

/** Tries `open` once a second until it connects and JetStream answers, or the wait is aborted. */
const connectWhenUp = async (
  url: string,
  open: () => Promise<Connection>,
  first: unknown,
  wait: NonNullable<ConnectOptions["wait"]>
): Promise<CommandConnection> => {
  wait.onWaiting(describeConnectError(url, first))
  const stoppedWaiting = () => new StartError(`stopped while waiting for NATS at ${url}`)
  // One try: the connection once JetStream answers, undefined while the server is not up yet.
  const once = async (): Promise<CommandConnection | undefined> => {
    if (wait.signal.aborted) throw stoppedWaiting()
    const opening = open()
    // An attempt can take seconds to fail; a stop does not wait for it (nor keeps what it opens).
    const stopped = new Promise<"stopped">((resolve) => wait.signal.addEventListener("abort", () => resolve("stopped"), { once: true }))
    const nc = await Promise.race([opening, stopped]).catch((error: unknown) => {
      if (!TRANSIENT.has(codeOf(error))) throw new StartError(describeConnectError(url, error))
      return undefined
    })
    if (nc === "stopped") {
      void opening.then((late) => late.close(), () => undefined)
      throw stoppedWaiting()
    }
    if (nc === undefined) return undefined
    try {
      await checkJetStream(nc)
      return { nc, url, embedded: undefined }
    } catch {
      // Up but JetStream is not ready yet (a cluster still electing): try again.
      await nc.close().catch(() => undefined)
      return undefined
    }
  }
  const up = await retryingPromise(once, (attempt) => attempt.ok && attempt.value === undefined, WAIT_FOR_NATS, wait.signal).catch((error: unknown) => {
    throw error instanceof RetryAborted ? stoppedWaiting() : error
  })
  if (up === undefined) throw stoppedWaiting()
  return up
}

/** Connects to `url` (comma-separated servers), checks that JetStream is on, or explains why not. */
export const connectForCommand = async (url: string, options: ConnectOptions): Promise<CommandConnection> => {
  const servers = url.split(",").map((s) => s.trim()).filter((s) => s !== "")
  const open = (to: ReadonlyArray<string> = servers) => openConnection({ servers: to, name: options.name, timeoutMs: 3_000 })
  let embedded: EmbeddedServer | undefined
  let nc: Connection
  try {
    nc = await open(servers)
  } catch (error) {
    const only = servers.length === 1 ? parseUrl(servers[0] ?? "") : undefined
    const local = only !== undefined && LOCAL_HOSTS.has(only.hostname) && only.username === "" && only.password === ""
    const embed = options.embed === true && local && codeOf(error) === "CONNECTION_REFUSED"
    if (!embed && options.wait !== undefined && TRANSIENT.has(codeOf(error))) return connectWhenUp(url, open, error, options.wait)
    if (!embed) throw new StartError(describeConnectError(url, error))
    embedded = await startEmbeddedServer(Number(only.port || 4222), resolve(options.dataDir ?? ".codeq/nats"))
    try {
      nc = await open([embedded.url])
    } catch (again) {
      await embedded.stop()
      throw new StartError(describeConnectError(embedded.url, again))
    }
  }
  try {
    await checkJetStream(nc)
  } catch (error) {
    await nc.close().catch(() => undefined)
    await embedded?.stop()
    throw new StartError(
      isJetStreamDisabled(error)
        ? `the NATS server at ${url} runs without JetStream; start it with -js (or enable jetstream in its config)`
        : `JetStream at ${url} does not answer: ${error instanceof Error ? error.message : String(error)}`
    )
  }
  return { nc, url: embedded?.url ?? url, embedded }
}
