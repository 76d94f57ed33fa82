#!/usr/bin/env node
/**
 * `codeq` command line. Only composition here: each command is a thin shell over a library call
 * (src/cli/*.ts). Errors are one line, `codeq: <what went wrong>`; exit codes: 0 done, 1 failed,
 * 2 wrong usage, 3 a check found problems.
 */
import type { CodeqClient } from "../sdk/client.js"
import { EXIT, UsageError } from "./args.js"

const USAGE = `usage: codeq <command> [options]   (codeq <command> --help for its options)

commands:
  serve                  run a broker: streams, projections, webhook deliveries, HTTP API
  worker                 an example worker on the NATS-native SDK
  tasks <action>         create, get, list, cancel, requeue tasks
  dlq <action>           list, requeue, purge dead-lettered tasks
  queues                 depth per command and lane: ready, delayed, in progress, dead letters
  replay                 rebuild, audit and re-export traces from the event log
  streams <action>       apply or show the streams
  projections rebuild    fold the log into a derived projection again
  config print           the effective configuration, secrets masked

configuration: environment variables, or a YAML file named by CODEQ_CONFIG (see README)
exit codes: 0 done, 1 failed, 2 wrong usage, 3 problems found (replay --audit)`

/** A client for one command, on a connection it owns (closed with the client). Loaded lazily: `--help` starts fast. */
const openClient = async (): Promise<CodeqClient> => {
  const [{ BrokerConfig }, { effectiveVariables, loadConfig }, { connectForCommand }, { CodeqClient }] = await Promise.all([
    import("../config/config.js"),
    import("../config/configFile.js"),
    import("./connect.js"),
    import("../sdk/client.js")
  ])
  const config = await loadConfig(BrokerConfig, await effectiveVariables())
  const { nc } = await connectForCommand(config.natsUrl, { name: "codeq-cli" })
  return CodeqClient.connect({ connection: nc, closeConnection: true, naming: config.naming })
}

const main = async (argv: ReadonlyArray<string>): Promise<number> => {
  const [command, ...rest] = argv
  switch (command) {
    case "serve":
      return (await import("./serve.js")).serve(rest)
    case "worker":
      return (await import("./worker.js")).worker(rest)
    case "tasks":
      return (await import("./tasks.js")).tasks(rest, openClient)
    case "dlq":
      return (await import("./tasks.js")).dlq(rest, openClient)
    case "queues":
      return (await import("./queues.js")).queues(rest, openClient)
    case "streams":
      return (await import("./admin.js")).streams(rest)
    case "projections":
      return (await import("./admin.js")).projections(rest)
    case "replay":
      return (await import("./replay.js")).replay(rest)
    case "config":
      return (await import("./admin.js")).configCommand(rest)
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(`${USAGE}\n`)
      return command === undefined ? EXIT.usage : EXIT.ok
    default:
      throw new UsageError(`unknown command ${command} (see codeq --help)`)
  }
}

/** One line for anything a command failed with: ours say what happened; Effect's wrappers are unwrapped. */
const describe = async (error: unknown): Promise<string> => {
  const { Cause, Runtime } = await import("effect")
  if (Runtime.isFiberFailure(error)) return describe(Cause.squash(error[Runtime.FiberFailureCauseId]))
  if (typeof error === "object" && error !== null && "_tag" in error && error._tag === "UnknownException" && "error" in error) return describe(error.error)
  if (error instanceof Error) return error.message.split("\n")[0] ?? error.name
  return String(error)
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
    if (code === EXIT.ok && ["serve", "worker"].includes(process.argv[2] ?? "")) process.exit(code)
  },
  async (error: unknown) => {
    process.stderr.write(`codeq: ${await describe(error)}\n`)
    process.exit(error instanceof UsageError ? EXIT.usage : EXIT.failed)
  }
)
