#!/usr/bin/env -S npx tsx
/**
 * `codeq` command line: `serve` runs a broker; `streams apply|show` provisions or shows the
 * streams. Only composition here; the work is in the library.
 */
import { Effect } from "effect"
import { connect } from "nats"
import { startBroker } from "../broker.js"
import { BrokerConfig } from "../config.js"
import { streamDefinitions } from "../../streams/definitions.js"
import { provisionStreams } from "../../streams/provision.js"
import { rebuildProjectionState, REBUILDABLE } from "../../projections/rebuild.js"
import { JetStreamEventLog } from "../eventlog/jetstream.js"
import { log as logger } from "../log.js"
import { setupTracing } from "../tracing/setup.js"
import { HttpConfig, httpServerOptions, startHttpServer } from "../http/index.js"
import { CodeqClient } from "../sdk/client.js"

const USAGE = `usage: codeq <command>

  serve            run a broker: streams provisioned, projections running, HTTP API on
                   CODEQ_HTTP_PORT (default 8080), until SIGTERM/SIGINT
  streams apply    create or update the streams; refuse incompatible ones
  streams show     print the streams' configuration and state
  projections rebuild <name>
                   drop a derived projection (task-state, dead-letters) and replay the log into it;
                   stop the brokers first

environment: NATS_URL (default nats://127.0.0.1:4222), CODEQ_STREAM_PREFIX, CODEQ_SUBJECT_ROOT,
CODEQ_REPLICAS, CODEQ_EVENTS_MAX_AGE_SECONDS, CODEQ_EVENTS_MAX_BYTES, CODEQ_CLAIM_DEDUP_SECONDS,
CODEQ_WEBHOOK_* and CODEQ_TRACING_* (see README)`

const log = (fields: Record<string, unknown>) => process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...fields })}\n`)

const serve = async () => {
  const config = await Effect.runPromise(BrokerConfig)
  const httpConfig = await Effect.runPromise(HttpConfig)
  // Tracing first: spans take their provider when the broker's components are built.
  const tracing = setupTracing(config.tracing)
  const broker = await startBroker(config, { traceExportFailures: () => tracing.exportFailures() })
  const client = await CodeqClient.connect({ connection: broker.nc, naming: config.naming })
  const http = await startHttpServer({
    ...httpServerOptions(httpConfig),
    client,
    metrics: broker.metrics,
    log: ({ level, msg, ...fields }) => logger[level](fields, msg)
  })
  logger.info({ nats: config.natsUrl, streams: config.naming.streamPrefix, http: http.url, tracing: tracing.exporting }, "codeq broker running")
  let stopping = false
  const shutdown = (signal: string) => {
    if (stopping) return
    stopping = true
    logger.info({ signal }, "shutting down: draining HTTP, stopping consumers, then flushing spans")
    // Order matters: no new requests or claims, in-flight work finishes, consumers stop, and only
    // then are spans flushed, so the spans of everything that finished are exported.
    const started = Date.now()
    const step = (name: string) => () => logger.info({ step: name, elapsed_ms: Date.now() - started }, "shutdown step done")
    http
      .close()
      .then(step("http drained"))
      .then(() => client.close())
      .then(() => broker.stop())
      .then(step("consumers stopped"))
      .then(() => tracing.shutdown(5_000))
      .then(step("spans flushed"))
      .then(
        () => process.exit(0),
        (error: unknown) => {
          logger.error({ error: String(error) }, "shutdown failed")
          process.exit(1)
        }
      )
  }
  process.on("SIGTERM", () => shutdown("SIGTERM"))
  process.on("SIGINT", () => shutdown("SIGINT"))
}

const streams = async (action: string | undefined) => {
  const config = await Effect.runPromise(BrokerConfig)
  const nc = await connect({ servers: config.natsUrl.split(","), noAsyncTraces: true })
  try {
    const jsm = await nc.jetstreamManager()
    const definitions = streamDefinitions(config.naming, config.streams)
    if (action === "apply") {
      for (const outcome of await provisionStreams(jsm, definitions)) log({ level: "info", ...outcome })
    } else if (action === "show") {
      for (const definition of definitions) {
        const info = await jsm.streams.info(definition.name)
        process.stdout.write(`${JSON.stringify({ config: info.config, state: info.state }, null, 2)}\n`)
      }
    } else {
      throw new Error(`unknown streams action ${action ?? "(none)"}: use apply or show`)
    }
  } finally {
    await nc.close()
  }
}

const progressBar = (done: number, total: number): string => {
  const width = 30
  const share = total === 0 ? 1 : Math.min(1, done / total)
  const filled = Math.round(share * width)
  return `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${(share * 100).toFixed(0).padStart(3)}% ${done}/${total} events`
}

const projections = async (action: string | undefined, name: string | undefined) => {
  if (action !== "rebuild" || name === undefined)
    throw new Error(`usage: codeq projections rebuild <${Object.keys(REBUILDABLE).join("|")}>`)
  const config = await Effect.runPromise(BrokerConfig)
  const nc = await connect({ servers: config.natsUrl.split(","), noAsyncTraces: true })
  const eventLog = JetStreamEventLog.connect(nc, config.naming)
  try {
    const total = await rebuildProjectionState(nc, eventLog, name, {
      replicas: config.streams.replicas,
      onProgress: ({ handled, total: all }) => process.stderr.write(`\r${progressBar(handled, all)}`)
    })
    process.stderr.write("\n")
    log({ level: "info", msg: "projection rebuilt", projection: name, events: total })
  } finally {
    eventLog.close()
    await nc.close()
  }
}

const main = async (argv: ReadonlyArray<string>) => {
  const [command, ...rest] = argv
  switch (command) {
    case "serve":
      return serve()
    case "streams":
      return streams(rest[0])
    case "projections":
      return projections(rest[0], rest[1])
    case undefined:
    case "help":
    case "--help":
      process.stdout.write(`${USAGE}\n`)
      return
    default:
      throw new Error(`unknown command ${command}\n${USAGE}`)
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`codeq: ${error instanceof Error ? error.message : String(error)}\n`)
  process.exit(1)
})
