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

const USAGE = `usage: codeq <command>

  serve            run a broker (streams provisioned, projections running) until SIGTERM/SIGINT
  streams apply    create or update the streams; refuse incompatible ones
  streams show     print the streams' configuration and state

environment: NATS_URL (default nats://127.0.0.1:4222), CODEQ_STREAM_PREFIX, CODEQ_SUBJECT_ROOT,
CODEQ_REPLICAS, CODEQ_EVENTS_MAX_AGE_SECONDS, CODEQ_EVENTS_MAX_BYTES, CODEQ_CLAIM_DEDUP_SECONDS`

const log = (fields: Record<string, unknown>) => process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...fields })}\n`)

const serve = async () => {
  const config = await Effect.runPromise(BrokerConfig)
  const broker = await startBroker(config)
  log({ level: "info", msg: "codeq broker running", nats: config.natsUrl, streams: config.naming.streamPrefix })
  let stopping = false
  const shutdown = (signal: string) => {
    if (stopping) return
    stopping = true
    log({ level: "info", msg: "shutting down", signal })
    broker.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        log({ level: "error", msg: "shutdown failed", error: String(error) })
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

const main = async (argv: ReadonlyArray<string>) => {
  const [command, ...rest] = argv
  switch (command) {
    case "serve":
      return serve()
    case "streams":
      return streams(rest[0])
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
