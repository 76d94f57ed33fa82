/**
 * `codeq serve`: connect (or start an embedded NATS), provision, run the projections, the webhook
 * deliveries and the HTTP API until SIGTERM/SIGINT; then drain HTTP, stop the consumers, flush
 * spans and exit 0. `--dev` is the quickstart: with no authentication configured it serves the
 * development tokens below on 127.0.0.1 only; without `--dev` and without authentication every
 * call is 401 and the broker says so at start.
 */
import { BrokerConfig } from "../config/config.js"
import { effectiveVariables, loadConfig } from "../config/configFile.js"
import { startBroker } from "../broker.js"
import { HttpConfig, httpServerOptions, startHttpServer } from "../http/index.js"
import { RETRY_AFTER_SECONDS } from "../http/errors.js"
import { log as logger } from "../log/log.js"
import { CodeqClient } from "../sdk/client.js"
import { setupTracing } from "../tracing/setup.js"
import { ConnectionWatch, closeConnection } from "../eventlog/connection.js"
import { createServer } from "node:http"
import { EXIT, parse, type CommandSpec } from "./args.js"
import { connectForCommand, StartError } from "./connect.js"
import { applyHeapGrowth } from "./heap.js"

export const SERVE: CommandSpec = {
  usage: "codeq serve [--dev]",
  summary:
    "Runs a broker: streams provisioned, projections and webhook deliveries running, the HTTP API on CODEQ_HTTP_PORT (default 8080), until SIGTERM or SIGINT. Configuration from the environment and CODEQ_CONFIG (see codeq config print).",
  flags: {
    dev: { type: "boolean", help: "development: loopback only, the README's development tokens when no authentication is configured" }
  }
}

/** The development tokens of `serve --dev` (tenant `demo`), as the README's quickstart uses them. */
export const DEV_TOKENS = [
  { token: "dev-producer-token", tenant: "demo", subject: "dev-producer", role: "producer" },
  { token: "dev-worker-token-1", tenant: "demo", subject: "dev-worker", role: "worker" },
  { token: "dev-admin-token-01", tenant: "demo", subject: "dev-admin", role: "admin" }
] as const

const hasAuth = (variables: ReadonlyMap<string, string>) => {
  const tokens = variables.get("CODEQ_HTTP_STATIC_TOKENS")
  return (tokens !== undefined && tokens.trim() !== "[]" && tokens.trim() !== "") || variables.has("CODEQ_HTTP_JWKS_URL")
}

interface StandIn {
  close(): Promise<void>
}

/**
 * The HTTP port while NATS does not answer yet: `/healthz` 200 (the process is alive), every other
 * path 503 with `Retry-After`, so an orchestrator keeps the broker out of rotation instead of
 * restarting it, and a client retries. Closed, connections and all, before the API takes the port.
 */
const standIn = (host: string, port: number): Promise<StandIn> =>
  new Promise((resolve, reject) => {
    const server = createServer((req, res) => {
      const alive = req.url === "/healthz"
      res.writeHead(alive ? 200 : 503, { "Content-Type": "application/json", ...(alive ? {} : { "Retry-After": String(RETRY_AFTER_SECONDS) }) })
      res.end(JSON.stringify(alive ? { status: "ok" } : { error: "the event log is unavailable: waiting for NATS", retryable: true }))
    })
    server.once("error", reject)
    server.listen(port, host, () =>
      resolve({
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done())
            server.closeAllConnections()
          })
      })
    )
  })

export const serve = async (argv: ReadonlyArray<string>): Promise<number> => {
  const parsed = parse(SERVE, argv)
  if (parsed === undefined) return EXIT.ok
  const dev = parsed.flags.dev === true
  const variables = new Map(await effectiveVariables())
  const devTokens = dev && !hasAuth(variables)
  if (devTokens) variables.set("CODEQ_HTTP_STATIC_TOKENS", JSON.stringify(DEV_TOKENS))
  if (dev && !variables.has("CODEQ_HTTP_HOST")) variables.set("CODEQ_HTTP_HOST", "127.0.0.1")
  if (dev && !variables.has("CODEQ_WEBHOOK_ALLOW_PRIVATE_NETWORKS")) variables.set("CODEQ_WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")
  const config = await loadConfig(BrokerConfig, variables)
  const httpConfig = await loadConfig(HttpConfig, variables)
  const heap = applyHeapGrowth(config.heapGrowthPercent)
  // Tracing first: spans take their provider when the broker's components are built.
  const tracing = setupTracing(config.tracing)
  // Until NATS answers, a stand-in on the HTTP port says so (see standIn below); SIGTERM or SIGINT
  // while waiting ends the wait and exits.
  const waiting = new AbortController()
  const stopWaiting = () => waiting.abort()
  process.once("SIGTERM", stopWaiting)
  process.once("SIGINT", stopWaiting)
  let stand: Promise<StandIn | undefined> | undefined
  let connection
  try {
    connection = await connectForCommand(config.natsUrl, {
      name: "codeq-broker",
      embed: process.env.CODEQ_EMBEDDED_NATS !== "false",
      dataDir: process.env.CODEQ_DATA_DIR ?? ".codeq/nats",
      wait: {
        signal: waiting.signal,
        onWaiting: (reason) => {
          logger.warn({ reason }, "NATS does not answer yet: waiting for it (HTTP answers 503 until then)")
          stand = standIn(httpConfig.host, httpConfig.port).catch((error: unknown) => {
            logger.warn({ error: String(error) }, "cannot serve HTTP while waiting for NATS")
            return undefined
          })
        }
      }
    })
  } catch (error) {
    await (await stand)?.close()
    if (waiting.signal.aborted) return EXIT.ok
    throw error
  } finally {
    process.off("SIGTERM", stopWaiting)
    process.off("SIGINT", stopWaiting)
  }
  await (await stand)?.close()
  if (connection.embedded !== undefined) logger.info({ nats: connection.url, store: connection.embedded.storeDir }, "nothing answered at NATS_URL: started an embedded nats-server -js")
  // The one watch of this connection: it logs the connection's drops and returns, and the broker,
  // the client and the HTTP server read it. WHY here: a drain needs the server; with NATS down,
  // "not closed" is not "connected", and a drain would hold a SIGTERM for its whole timeout.
  const watch = new ConnectionWatch(connection.nc, { log: logger.child({ component: "broker" }) })
  const stopNats = async () => {
    watch.stop()
    await closeConnection(connection.nc, watch.connected)
    await connection.embedded?.stop()
  }
  let broker
  try {
    broker = await startBroker(config, { connection: connection.nc, connectionWatch: watch, traceExportFailures: () => tracing.exportFailures() })
  } catch (error) {
    await stopNats()
    throw new StartError(error instanceof Error ? error.message : String(error))
  }
  const client = await CodeqClient.connect({ connection: connection.nc, connectionWatch: watch, naming: config.naming })
  const http = await startHttpServer({ ...httpServerOptions(httpConfig), client, metrics: broker.metrics, log: ({ level, msg, ...fields }) => logger[level](fields, msg) }).catch(async (error: unknown) => {
    await client.close()
    await broker.stop()
    await stopNats()
    throw new StartError(`cannot serve HTTP on ${httpConfig.host}:${httpConfig.port}: ${error instanceof Error ? error.message : String(error)}`)
  })
  logger.info({ nats: connection.url, streams: config.naming.streamPrefix, http: http.url, tracing: tracing.exporting, heapGrowth: heap.applied === "set" ? `${heap.percent}%` : heap.applied }, "codeq broker running")
  if (devTokens)
    logger.warn(
      { tenant: "demo", producer: DEV_TOKENS[0].token, worker: DEV_TOKENS[1].token, admin: DEV_TOKENS[2].token },
      "development mode: the README's development tokens are accepted on loopback; never use --dev in production"
    )
  else if (!hasAuth(variables))
    logger.warn({}, "no authentication is configured (CODEQ_HTTP_STATIC_TOKENS or CODEQ_HTTP_JWKS_URL): every API call will be answered 401")

  return new Promise<number>((resolve) => {
    let stopping = false
    const shutdown = (signal: string) => {
      if (stopping) return
      stopping = true
      logger.info({ signal }, "shutting down: draining HTTP, stopping consumers, then flushing spans")
      // Order matters: no new requests or claims, in-flight work finishes, consumers stop, and
      // only then are spans flushed, so the spans of everything that finished are exported.
      const started = Date.now()
      const step = (name: string) => () => logger.info({ step: name, elapsed_ms: Date.now() - started }, "shutdown step done")
      http
        .close()
        .then(step("http drained"))
        .then(() => client.close())
        .then(() => broker.stop())
        .then(step("consumers stopped"))
        .then(stopNats)
        .then(() => tracing.shutdown(5_000))
        .then(step("spans flushed"))
        .then(
          () => resolve(EXIT.ok),
          (error: unknown) => {
            logger.error({ error: String(error) }, "shutdown failed")
            resolve(EXIT.failed)
          }
        )
    }
    process.on("SIGTERM", () => shutdown("SIGTERM"))
    process.on("SIGINT", () => shutdown("SIGINT"))
    // WHY: npm 11 does not pass a SIGTERM sent to `npm start` on to its script; it exits and the
    // broker would live on as an orphan holding its ports. Run by npm, the broker takes the loss
    // of its parent for the signal (run directly, e.g. under nohup, it keeps running).
    if (process.env.npm_lifecycle_event !== undefined) {
      const parent = process.ppid
      const orphanWatch = setInterval(() => {
        if (process.ppid === parent) return
        clearInterval(orphanWatch)
        shutdown("parent exited")
      }, 500)
      orphanWatch.unref()
    }
  })
}
