/**
 * Operator commands: `streams apply|show`, `projections rebuild <name>`, `config print`. Each a
 * thin shell over the library: provisioning, the rebuild, the config registry.
 */
import { BrokerConfig } from "../config/config.js"
import { effectiveVariables, loadConfig, printableConfig } from "../config/configFile.js"
import { JetStreamEventLog } from "../eventlog/jetstream.js"
import { closeConnection } from "../eventlog/connection.js"
import { streamDefinitions } from "../../streams/definitions.js"
import { describeStreams, provisionStreams } from "../eventlog/provision.js"
import { rebuildProjectionState, REBUILDABLE } from "../../projections/rebuild.js"
import { EXIT, UsageError, parse, table, type CommandSpec } from "./args.js"
import { connectForCommand } from "./connect.js"

const JSON_FLAG = { type: "boolean", help: "JSON for scripts instead of a table" } as const

export const STREAMS: CommandSpec = {
  usage: "codeq streams <apply|show> [--json]",
  summary: "apply: create or update the streams (an incompatible existing stream is refused, naming the difference); show: their configuration and state.",
  flags: { json: JSON_FLAG }
}

export const PROJECTIONS: CommandSpec = {
  usage: `codeq projections rebuild <${Object.keys(REBUILDABLE).join("|")}>`,
  summary: "Drops a derived projection's state and folds the whole log into it again, with progress. Stop the brokers first.",
  flags: {}
}

export const CONFIG: CommandSpec = {
  usage: "codeq config print [--json]",
  summary: "The effective configuration: each key's value from the environment or the CODEQ_CONFIG file (environment wins), secrets masked; unset keys take their defaults.",
  flags: { json: JSON_FLAG }
}

const progressBar = (done: number, total: number): string => {
  const width = 30
  const share = total === 0 ? 1 : Math.min(1, done / total)
  const filled = Math.round(share * width)
  return `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${(share * 100).toFixed(0).padStart(3)}% ${done}/${total} events`
}

export const streams = async (argv: ReadonlyArray<string>): Promise<number> => {
  const parsed = parse(STREAMS, argv)
  if (parsed === undefined) return EXIT.ok
  const action = parsed.positionals[0]
  if (action !== "apply" && action !== "show") throw new UsageError(`streams needs an action: apply or show (got ${action ?? "none"})`)
  const config = await loadConfig(BrokerConfig, await effectiveVariables())
  const { nc } = await connectForCommand(config.natsUrl, { name: "codeq-cli" })
  try {
    const definitions = streamDefinitions(config.naming, config.streams)
    if (action === "apply") {
      const outcomes = await provisionStreams(nc, definitions)
      process.stdout.write(`${parsed.flags.json === true ? JSON.stringify(outcomes, null, 2) : table(outcomes, ["stream", "action"])}\n`)
    } else {
      const infos = await describeStreams(nc, definitions.map((d) => d.name))
      if (parsed.flags.json === true) process.stdout.write(`${JSON.stringify(infos.map((i) => ({ config: i.config, state: i.state })), null, 2)}\n`)
      else
        process.stdout.write(
          `${table(
            infos.map((i) => ({ stream: i.config.name, retention: i.config.retention, storage: i.config.storage, replicas: i.config.num_replicas, messages: i.state.messages, bytes: i.state.bytes, first: i.state.first_seq, last: i.state.last_seq })),
            ["stream", "retention", "storage", "replicas", "messages", "bytes", "first", "last"]
          )}\n`
        )
    }
    return EXIT.ok
  } finally {
    await closeConnection(nc, true)
  }
}

export const projections = async (argv: ReadonlyArray<string>): Promise<number> => {
  const parsed = parse(PROJECTIONS, argv)
  if (parsed === undefined) return EXIT.ok
  const [action, name] = parsed.positionals
  if (action !== "rebuild" || name === undefined || REBUILDABLE[name] === undefined) throw new UsageError(`usage: ${PROJECTIONS.usage}`)
  const config = await loadConfig(BrokerConfig, await effectiveVariables())
  const { nc } = await connectForCommand(config.natsUrl, { name: "codeq-cli" })
  const eventLog = JetStreamEventLog.connect(nc, config.naming)
  const tty = process.stderr.isTTY
  try {
    const total = await rebuildProjectionState(nc, eventLog, name, {
      replicas: config.streams.replicas,
      onProgress: ({ handled, total: all }) => {
        if (tty) process.stderr.write(`\r${progressBar(handled, all)}`)
      }
    })
    if (tty) process.stderr.write("\n")
    process.stdout.write(`${JSON.stringify({ projection: name, rebuilt: true, events: total })}\n`)
    return EXIT.ok
  } finally {
    eventLog.close()
    await closeConnection(nc, true)
  }
}

export const configCommand = async (argv: ReadonlyArray<string>): Promise<number> => {
  const parsed = parse(CONFIG, argv)
  if (parsed === undefined) return EXIT.ok
  if (parsed.positionals[0] !== "print") throw new UsageError(`usage: ${CONFIG.usage}`)
  const variables = await effectiveVariables()
  // Validates every value: a bad one stops here with the key, the value and the rule.
  await loadConfig(BrokerConfig, variables)
  const { HttpConfig } = await import("../http/config.js")
  await loadConfig(HttpConfig, variables)
  const rows = printableConfig(variables).map((row) => ({ ...row, value: row.value ?? "(default)" }))
  process.stdout.write(`${parsed.flags.json === true ? JSON.stringify(Object.fromEntries(rows.map((r) => [r.key, r.value])), null, 2) : table(rows, ["key", "env", "value"])}\n`)
  return EXIT.ok
}
