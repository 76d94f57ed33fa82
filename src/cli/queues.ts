/**
 * `codeq queues`: a tenant's queues from the task-state read model — per command and priority
 * lane, tasks ready, delayed (runAt ahead) and in progress, and the dead-lettered ones.
 */
import type { CodeqClient } from "../sdk/client.js"
import { EXIT, parse, required, table, type CommandSpec } from "./args.js"

export const QUEUES: CommandSpec = {
  usage: "codeq queues --tenant <tenant> [--json]",
  summary: "Depth of every queue of the tenant: per command and priority lane, ready, delayed and in progress; dead letters; totals. From the read model (it trails the log by the projections' lag).",
  flags: { tenant: { type: "string", help: "tenant (required)" }, json: { type: "boolean", help: "JSON for scripts instead of a table" } }
}

export const queues = async (argv: ReadonlyArray<string>, open: () => Promise<CodeqClient>): Promise<number> => {
  const parsed = parse(QUEUES, argv)
  if (parsed === undefined) return EXIT.ok
  const tenant = required(parsed, "tenant")
  const client = await open()
  try {
    const overview = await client.tasks.queues(tenant)
    if (parsed.flags.json === true) {
      process.stdout.write(`${JSON.stringify(overview, null, 2)}\n`)
      return EXIT.ok
    }
    const rows = overview.commands.flatMap((queue) =>
      Object.entries(queue.lanes)
        .sort(([a], [b]) => Number(b) - Number(a))
        .map(([lane, counts]) => ({ command: queue.command, lane, ...counts, deadLettered: "" as number | string }))
        .concat([{ command: queue.command, lane: "all", ready: queue.ready, delayed: queue.delayed, inProgress: queue.inProgress, deadLettered: queue.deadLettered }])
    )
    rows.push({ command: "(total)", lane: "", ...overview.totals })
    process.stdout.write(`${table(rows, ["command", "lane", "ready", "delayed", "inProgress", "deadLettered"])}\n`)
    return EXIT.ok
  } finally {
    await client.close()
  }
}
