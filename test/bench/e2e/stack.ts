/**
 * A codeq stack as a user starts it, one per run: a private nats-server (its own store, a free
 * loopback port, monitoring on `-m`), and `codeq serve` as a child process configured only
 * through its documented environment — a fresh stream prefix and subject root, the HTTP API on a
 * free loopback port with static tokens, tracing on or off. The broker is the built binary run by
 * node itself (`node dist/src/cli/main.js serve`, what `codeq serve` runs; the bench builds dist/
 * first), so the child's pid is the process whose RSS is read, without a TypeScript loader in it.
 */
import { randomBytes } from "node:crypto"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import type { Naming } from "../../../streams/definitions.js"
import { freePort, startNatsServer, type NatsServerHandle } from "../../../src/testing/natsServer.js"
import { cleanEnv, type Proc, type ProcessGroup } from "./processes.js"

/** The built CLI entry, resolved from this file so the bench runs from any working directory. */
const CLI = fileURLToPath(new URL("../../../dist/src/cli/main.js", import.meta.url))
const READY_TIMEOUT_MS = 60_000

export const TENANT = "bench"
export const COMMAND = "noop"

/** A private nats-server with its monitoring port. */
export interface PrivateNats {
  readonly server: NatsServerHandle
  readonly url: string
  readonly monitorUrl: string
  /** Stops the server and deletes its store. */
  stop(): Promise<void>
}

/** Servers not yet stopped, for a Ctrl-C in the middle of a run. */
export const ACTIVE_SERVERS = new Set<PrivateNats>()

export const startPrivateNats = async (): Promise<PrivateNats> => {
  const monitorPort = await freePort()
  const server = await startNatsServer({ ownServer: true, args: ["-m", String(monitorPort)] })
  const nats: PrivateNats = {
    server,
    url: server.url,
    monitorUrl: `http://127.0.0.1:${monitorPort}`,
    stop: async () => {
      ACTIVE_SERVERS.delete(nats)
      await server.stop()
    }
  }
  ACTIVE_SERVERS.add(nats)
  return nats
}

export interface CodeqStack {
  readonly nats: PrivateNats
  readonly naming: Naming
  readonly httpUrl: string
  readonly broker: Proc
  readonly producerToken: string
  /** One per worker process; the token's subject is the worker's name. */
  readonly workerTokens: ReadonlyArray<string>
}

export interface StackOptions {
  readonly group: ProcessGroup
  readonly logDir: string
  /** File-name prefix of this run's logs. */
  readonly label: string
  readonly workers: number
  /** OTLP gRPC receiver (`host:port`) when tracing is on. */
  readonly otlpEndpoint: string | undefined
  /** Lets the broker deliver webhooks to loopback (the bench's receiver). */
  readonly loopbackWebhooks?: boolean
}

const token = () => randomBytes(24).toString("hex")

/** Polls `/readyz` until it answers 200; fails fast when the broker exits first. */
const waitReady = async (httpUrl: string, broker: Proc): Promise<void> => {
  const deadline = Date.now() + READY_TIMEOUT_MS
  let last = "no answer"
  while (Date.now() < deadline) {
    if (!broker.running) throw new Error(`codeq serve exited before it was ready:\n${await broker.tail()}`)
    try {
      const response = await fetch(`${httpUrl}/readyz`)
      if (response.status === 200) return
      last = `HTTP ${response.status}`
    } catch (error) {
      last = error instanceof Error ? error.message : String(error)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`codeq serve not ready within ${READY_TIMEOUT_MS} ms (${last}):\n${await broker.tail()}`)
}

/** Starts `codeq serve` on `nats`; the caller stops both (group kill, then `nats.stop()`). */
export const startCodeqStack = async (nats: PrivateNats, options: StackOptions): Promise<CodeqStack> => {
  const suffix = randomBytes(4).toString("hex")
  const naming: Naming = { streamPrefix: `E2E_${suffix.toUpperCase()}`, subjectRoot: `e2e_${suffix}` }
  const httpPort = await freePort()
  const producerToken = token()
  const workerTokens = Array.from({ length: options.workers }, token)
  const staticTokens = [
    { token: producerToken, tenant: TENANT, subject: "producer", role: "producer" },
    ...workerTokens.map((value, i) => ({ token: value, tenant: TENANT, subject: `worker-${i + 1}`, role: "worker" }))
  ]
  const tracing: Record<string, string> =
    options.otlpEndpoint === undefined
      ? { CODEQ_TRACING_ENABLED: "false" }
      : {
          CODEQ_TRACING_ENABLED: "true",
          CODEQ_TRACING_OTLP_ENDPOINT: options.otlpEndpoint,
          CODEQ_TRACING_OTLP_INSECURE: "true",
          CODEQ_TRACING_SAMPLE_RATIO: "1.0"
        }
  const env = cleanEnv({
    NATS_URL: nats.url,
    CODEQ_STREAM_PREFIX: naming.streamPrefix,
    CODEQ_SUBJECT_ROOT: naming.subjectRoot,
    CODEQ_HTTP_HOST: "127.0.0.1",
    CODEQ_HTTP_PORT: String(httpPort),
    CODEQ_HTTP_STATIC_TOKENS: JSON.stringify(staticTokens),
    ...(options.loopbackWebhooks === true ? { CODEQ_WEBHOOK_ALLOW_PRIVATE_NETWORKS: "true" } : {}),
    ...tracing
  })
  const broker = options.group.spawnNode([CLI, "serve"], { name: "broker", logFile: join(options.logDir, `${options.label}-broker.log`), env })
  const httpUrl = `http://127.0.0.1:${httpPort}`
  await waitReady(httpUrl, broker)
  return { nats, naming, httpUrl, broker, producerToken, workerTokens }
}
