/**
 * `codeq worker`: an example worker on the NATS-native SDK. It claims tasks of the given commands,
 * "works" for `--work-ms`, and completes each with `{ ok: true, worker, payload size }` — enough to
 * watch a task go from create to webhook, and its trace in a tracing UI. Runs until SIGTERM/SIGINT,
 * then lets running handlers finish and settle.
 */
import { BrokerConfig } from "../config/config.js"
import { effectiveVariables, loadConfig } from "../config/configFile.js"
import { closeConnection } from "../eventlog/connection.js"
import { log } from "../log/log.js"
import { CodeqClient } from "../sdk/client.js"
import { setupTracing } from "../tracing/setup.js"
import { EXIT, integerFlag, optionalString, parse, required, type CommandSpec } from "./args.js"
import { connectForCommand } from "./connect.js"

export const WORKER: CommandSpec = {
  usage: "codeq worker --tenant <tenant> --command <name> [--command <name> ...] [--concurrency N] [--work-ms N] [--worker-id ID]",
  summary: "An example worker: claims tasks of the commands, waits --work-ms, completes each with a small result. Until SIGTERM/SIGINT.",
  flags: {
    tenant: { type: "string", help: "tenant whose tasks to work on (required)" },
    command: { type: "string", help: "a command to claim (required; comma-separated for several)" },
    concurrency: { type: "string", help: "handlers at once, 1-1000 (default 8)", range: [1, 1000] },
    "work-ms": { type: "string", help: "simulated work per task in ms, 0-600000 (default 0)", range: [0, 600_000] },
    "worker-id": { type: "string", help: "recorded on claims (default <host>-<random>)" }
  }
}

export const worker = async (argv: ReadonlyArray<string>): Promise<number> => {
  const parsed = parse(WORKER, argv)
  if (parsed === undefined) return EXIT.ok
  const tenant = required(parsed, "tenant")
  const commands = required(parsed, "command").split(",").map((c) => c.trim()).filter((c) => c !== "")
  const concurrency = integerFlag("concurrency", optionalString(parsed, "concurrency") ?? "8", [1, 1000])
  const workMs = integerFlag("work-ms", optionalString(parsed, "work-ms") ?? "0", [0, 600_000])
  const workerId = optionalString(parsed, "worker-id")
  const config = await loadConfig(BrokerConfig, await effectiveVariables())
  const tracing = setupTracing(config.tracing)
  const { nc } = await connectForCommand(config.natsUrl, { name: "codeq-worker" })
  const client = await CodeqClient.connect({ connection: nc, naming: config.naming })
  const w = client.worker(tenant, workerId === undefined ? {} : { workerId })
  const running = w.run(
    commands,
    async (task, job) => {
      if (workMs > 0) await new Promise((resolve) => setTimeout(resolve, workMs))
      log.info({ task_id: task.id, command: task.command, attempt: job.attempt }, "task handled")
      return { ok: true, worker: w.workerId, payloadBytes: JSON.stringify(task.payload ?? null).length }
    },
    { concurrency }
  )
  log.info({ tenant, commands, concurrency, worker_id: w.workerId }, "codeq worker running")
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", () => resolve())
    process.once("SIGINT", () => resolve())
  })
  await w.stop()
  await running
  await client.close()
  await closeConnection(nc, !nc.isClosed())
  await tracing.shutdown(5_000)
  return EXIT.ok
}
