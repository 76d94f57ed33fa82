/**
 * What the orchestrator and its load processes say to each other over the IPC channel, and the
 * child side of it. A child gets its config as JSON in argv, connects, says `ready`, waits for
 * `go`, works, reports progress at most every 50 ms, and on `stop` (or when its work is done)
 * sends one `result`; it exits once told to stop, so its CPU time can be read until then. Times
 * are wall-clock milliseconds (`Date.now()`), the clock the server's JetStream timestamps use, so
 * instants from different processes compare.
 */
import { fileURLToPath } from "node:url"
import type { Naming } from "../../../streams/definitions.js"
import type * as Codeq from "../../../src/index.js"
import type { TracingHandle } from "../../../src/tracing/setup.js"
import type { Pool } from "undici"

export type ParentMessage = { readonly type: "go" } | { readonly type: "stop" }

/** What a producer did: the ids it created, from its first create call to its last answer. */
export interface ProducerResult {
  readonly kind: "producer"
  readonly ids: ReadonlyArray<string>
  readonly firstAt: number
  readonly lastAt: number
  readonly failed: number
  readonly errors: ReadonlyArray<string>
}

/** What a worker did: every id it completed, repeats included (a repeat is a duplicate). */
export interface WorkerResult {
  readonly kind: "worker"
  readonly completed: ReadonlyArray<string>
  /** When the last completion was known to this worker (handler returned, or settle answered). */
  readonly lastAt: number
  readonly failed: number
  readonly errors: ReadonlyArray<string>
}

/** The raw JetStream ceiling: acked publishes, then consume + ack, of the same messages. */
export interface RawResult {
  readonly kind: "raw"
  readonly messages: number
  readonly published: number
  readonly publishMs: number
  readonly consumed: number
  readonly consumeMs: number
  /** The consumer's ack floor after the run: every message acked when it equals `messages`. */
  readonly ackFloor: number
  readonly failed: number
  readonly errors: ReadonlyArray<string>
}

export type ChildResult = ProducerResult | WorkerResult | RawResult

export type ChildMessage =
  | { readonly type: "ready" }
  | { readonly type: "progress"; readonly done: number; readonly lastAt: number }
  | { readonly type: "result"; readonly result: ChildResult }
  | { readonly type: "failed"; readonly message: string }

/** Where codeq processes export spans when tracing is on. */
export interface TracingTarget {
  readonly endpoint: string
}

/** Config of a producer or a worker of any system. */
export interface LoadConfig {
  /** codeq through the NATS-native SDK or through the HTTP API. */
  readonly via: "sdk" | "http"
  /** Which side this process plays (the BullMQ script plays either). */
  readonly role: "producer" | "worker"
  readonly connectionName: string
  readonly tenant: string
  readonly command: string
  readonly payloadBytes: number
  /** Tasks this producer creates. */
  readonly tasks: number
  /** Tasks per create call. */
  readonly batch: number
  /** Requests (HTTP) or batches in flight at once. */
  readonly inflight: number
  /** Fixed creation rate in tasks/s; 0 creates as fast as possible. */
  readonly rate: number
  /** Handlers (SDK, BullMQ) or claim loops (HTTP) running at once. */
  readonly concurrency: number
  readonly natsUrl: string
  readonly naming: Naming
  readonly tracing: TracingTarget | undefined
  /** A webhook URL every created task carries ("" for none). */
  readonly webhook: string
  /** HTTP variants: the broker's base URL and this process's bearer token. */
  readonly httpUrl: string
  readonly token: string
  /** BullMQ: queue name and Redis. */
  readonly queue: string
  readonly redis: { readonly host: string; readonly port: number }
}

/** The package's entry in `dist/`, which the orchestrator builds before any run. */
const BUILT_PACKAGE = new URL("../../../dist/src/index.js", import.meta.url).href

/**
 * codeq as users import it: the built package (`dist/`), not the TypeScript sources through the
 * loader the bench scripts themselves run under — the compiled code is what runs in production, and
 * measured on the producer's create path the loader-compiled sources cost ~20 % more CPU per task.
 */
export const loadCodeq = async (): Promise<typeof Codeq> => (await import(BUILT_PACKAGE)) as typeof Codeq

/** Tracing for a load process: exporting to the bench's receiver at ratio 1, or the propagator only. */
export const childTracing = async (config: LoadConfig): Promise<TracingHandle> =>
  (await loadCodeq()).setupTracing(
    config.tracing === undefined
      ? { tracingEnabled: false }
      : { tracingEnabled: true, tracingOtlpEndpoint: config.tracing.endpoint, tracingOtlpInsecure: true, tracingSampleRatio: 1, tracingServiceName: config.connectionName },
    { env: {} }
  )

/** An answer of the HTTP API: status and parsed JSON body (undefined when empty). */
export interface HttpAnswer {
  readonly status: number
  readonly body: unknown
}

/** POSTs JSON with the bearer token through a keep-alive pool; throws on a non-2xx answer. */
export const postJson = async (pool: Pool, token: string, path: string, body: unknown): Promise<HttpAnswer> => {
  const response = await pool.request({
    method: "POST",
    path,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(body)
  })
  const text = await response.body.text()
  if (response.statusCode >= 300) throw new Error(`POST ${path}: HTTP ${response.statusCode} ${text.slice(0, 300)}`)
  return { status: response.statusCode, body: text === "" ? undefined : (JSON.parse(text) as unknown) }
}

/** A JSON payload of exactly `bytes` bytes when serialized (at least `{"d":""}`). */
export const makePayload = (bytes: number): { readonly d: string } => ({ d: "x".repeat(Math.max(0, bytes - 8)) })

/** Collects up to `limit` distinct messages. */
export class ErrorLog {
  readonly messages: Array<string> = []
  count = 0
  constructor(private readonly limit = 5) {}
  /** Records `error` as the cause of `count` failed items. */
  add(error: unknown, count = 1): void {
    this.count += count
    const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
    if (this.messages.length < this.limit && !this.messages.includes(text)) this.messages.push(text)
  }
}

export interface ChildControl {
  /** Resolves when the orchestrator says go. */
  readonly go: Promise<void>
  /** Resolves when the orchestrator says stop. */
  readonly stopped: Promise<void>
  readonly isStopped: () => boolean
  /** Latest progress; sent at most every 50 ms. */
  progress(done: number, lastAt: number): void
}

/**
 * Runs a child when `moduleUrl` is the process's entry point (so the orchestrator can import the
 * same module for its own side): config from argv, `connect(config)` (connections opened,
 * nothing measured yet), `ready`, then the work it returned. Exits once the result is sent and
 * the orchestrator said stop, or at once if the orchestrator goes away (a dead orchestrator must
 * not leave load running).
 */
export const runChild = <C>(
  moduleUrl: string,
  connect: (config: C) => Promise<(control: ChildControl) => Promise<ChildResult>>
): void => {
  if (process.send === undefined || process.argv[1] !== fileURLToPath(moduleUrl)) return
  const send = (message: ChildMessage, then?: () => void) => {
    if (process.send === undefined || !process.connected) return then?.()
    process.send(message, undefined, {}, () => then?.())
  }
  let finishing = false
  process.on("disconnect", () => {
    if (!finishing) process.exit(2)
  })
  let onGo: () => void = () => undefined
  let onStop: () => void = () => undefined
  let stopped = false
  const go = new Promise<void>((resolve) => (onGo = resolve))
  const stop = new Promise<void>((resolve) => (onStop = resolve))
  process.on("message", (message: ParentMessage) => {
    if (message.type === "go") onGo()
    if (message.type === "stop") {
      stopped = true
      onStop()
    }
  })
  let latest: { done: number; lastAt: number } | undefined
  let sent = -1
  const ticker = setInterval(() => {
    if (latest !== undefined && latest.done !== sent) {
      sent = latest.done
      send({ type: "progress", ...latest })
    }
  }, 50)
  const control: ChildControl = { go, stopped: stop, isStopped: () => stopped, progress: (done, lastAt) => void (latest = { done, lastAt }) }
  const fail = (error: unknown) => {
    finishing = true
    clearInterval(ticker)
    send({ type: "failed", message: error instanceof Error ? (error.stack ?? error.message) : String(error) }, () => process.exit(1))
  }
  try {
    const config = JSON.parse(process.argv[2] ?? "{}") as C
    connect(config)
      .then(async (work) => {
        send({ type: "ready" })
        const result = await work(control)
        finishing = true
        clearInterval(ticker)
        if (latest !== undefined) send({ type: "progress", ...latest })
        // Stays until told to stop (or the orchestrator goes), so its CPU time can be read at the end of the run.
        send({ type: "result", result }, () => void stop.then(() => process.exit(0)))
      })
      .catch(fail)
  } catch (error) {
    fail(error)
  }
}
