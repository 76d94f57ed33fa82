/**
 * Task commands for people and scripts, each a thin shell over the SDK's calls (the same the HTTP
 * API makes): `tasks create|get|list|cancel|requeue` and `dlq list|requeue|purge`. Tables for
 * people, `--json` for scripts.
 */
import type { TaskStatus } from "../domain/events.js"
import type { CodeqClient } from "../sdk/client.js"
import { EXIT, UsageError, integerFlag, optionalString, parse, required, table, type CommandSpec, type Parsed } from "./args.js"

const TENANT = { type: "string", help: "tenant (required)" } as const
const JSON_FLAG = { type: "boolean", help: "JSON for scripts instead of a table" } as const

export const TASKS: CommandSpec = {
  usage: "codeq tasks <create|get|list|cancel|requeue> --tenant <tenant> [options]",
  summary: [
    "Tasks by hand:",
    "  create --command C [--payload JSON] [--priority 0-9] [--webhook URL] [--max-attempts N] [--delay-seconds N] [--idempotency-key K]",
    "  get <task-id>          list [--status S] [--command C] [--limit N]",
    "  cancel <task-id> [--reason R]          requeue <task-id> (a dead-lettered task)"
  ].join("\n"),
  flags: {
    tenant: TENANT,
    command: { type: "string", help: "create: the task's command; list: only this command" },
    payload: { type: "string", help: "create: the payload as JSON" },
    priority: { type: "string", help: "create: 0 (lowest, default) to 9", range: [0, 9] },
    webhook: { type: "string", help: "create: URL called with the result" },
    "max-attempts": { type: "string", help: "create: deliveries before dead-lettering, 1-100", range: [1, 100] },
    "delay-seconds": { type: "string", help: "create: not delivered before this many seconds", range: [0, 366 * 86_400] },
    "idempotency-key": { type: "string", help: "create: repeated creates with the key return the same task" },
    status: { type: "string", help: "list: PENDING, IN_PROGRESS, COMPLETED, FAILED, DEAD_LETTERED or CANCELLED" },
    limit: { type: "string", help: "list: at most this many, 1-1000 (default 100)", range: [1, 1000] },
    reason: { type: "string", help: "cancel: recorded on the event" },
    json: JSON_FLAG
  }
}

export const DLQ: CommandSpec = {
  usage: "codeq dlq <list|requeue|purge> --tenant <tenant> [--command C] [<task-id>] [--json]",
  summary: "The dead-letter queue: list (optionally of one command), requeue a task (attempts reset, same trace), purge a task for good.",
  flags: { tenant: TENANT, command: { type: "string", help: "list: only this command" }, json: JSON_FLAG }
}

const STATUSES: ReadonlyArray<TaskStatus> = ["PENDING", "IN_PROGRESS", "COMPLETED", "FAILED", "DEAD_LETTERED", "CANCELLED"]
const TASK_COLUMNS = ["id", "command", "status", "priority", "attempts", "maxAttempts", "createdAt", "updatedAt"]

const taskId = (parsed: Parsed, action: string): string => {
  const [id] = parsed.positionals.slice(1)
  if (id === undefined) throw new UsageError(`tasks ${action} needs a task id`)
  return id
}

const out = <R extends object>(parsed: Parsed, value: unknown, rows: ReadonlyArray<R>, columns: ReadonlyArray<string>): void => {
  process.stdout.write(`${parsed.flags.json === true ? JSON.stringify(value, null, 2) : table(rows, columns)}\n`)
}

const numberOr = (parsed: Parsed, name: string, range: readonly [number, number]) => {
  const raw = optionalString(parsed, name)
  return raw === undefined ? undefined : integerFlag(name, raw, range)
}

export const tasks = async (argv: ReadonlyArray<string>, open: () => Promise<CodeqClient>): Promise<number> => {
  const parsed = parse(TASKS, argv)
  if (parsed === undefined) return EXIT.ok
  const action = parsed.positionals[0]
  if (action === undefined || !["create", "get", "list", "cancel", "requeue"].includes(action)) throw new UsageError(`tasks needs an action: create, get, list, cancel or requeue (got ${action ?? "none"})`)
  const tenant = required(parsed, "tenant")
  const client = await open()
  try {
    if (action === "create") {
      let payload: unknown
      const raw = optionalString(parsed, "payload")
      if (raw !== undefined) {
        try {
          payload = JSON.parse(raw)
        } catch {
          throw new UsageError("--payload must be JSON")
        }
      }
      const priority = numberOr(parsed, "priority", [0, 9])
      const maxAttempts = numberOr(parsed, "max-attempts", [1, 100])
      const delaySeconds = numberOr(parsed, "delay-seconds", [0, 366 * 86_400])
      const webhook = optionalString(parsed, "webhook")
      const idempotencyKey = optionalString(parsed, "idempotency-key")
      const task = await client.producer(tenant).create({
        command: required(parsed, "command"),
        ...(payload !== undefined ? { payload } : {}),
        ...(priority !== undefined ? { priority } : {}),
        ...(maxAttempts !== undefined ? { maxAttempts } : {}),
        ...(delaySeconds !== undefined ? { delaySeconds } : {}),
        ...(webhook !== undefined ? { webhook } : {}),
        ...(idempotencyKey !== undefined ? { idempotencyKey } : {})
      })
      out(parsed, task, [task], TASK_COLUMNS)
    } else if (action === "get") {
      const task = await client.tasks.get(tenant, taskId(parsed, action))
      out(parsed, task, [task], TASK_COLUMNS)
    } else if (action === "list") {
      const status = optionalString(parsed, "status")
      if (status !== undefined && !STATUSES.includes(status as TaskStatus)) throw new UsageError(`--status must be one of ${STATUSES.join(", ")}`)
      const command = optionalString(parsed, "command")
      const limit = numberOr(parsed, "limit", [1, 1000])
      const found = await client.tasks.list(tenant, {
        ...(status !== undefined ? { status: status as TaskStatus } : {}),
        ...(command !== undefined ? { command } : {}),
        ...(limit !== undefined ? { limit } : {})
      })
      out(parsed, found, found, TASK_COLUMNS)
    } else if (action === "cancel") {
      const task = await client.tasks.cancel(tenant, taskId(parsed, action), optionalString(parsed, "reason"))
      out(parsed, task, [task], TASK_COLUMNS)
    } else {
      const task = await client.tasks.requeue(tenant, taskId(parsed, action))
      out(parsed, task, [task], TASK_COLUMNS)
    }
    return EXIT.ok
  } finally {
    await client.close()
  }
}

export const dlq = async (argv: ReadonlyArray<string>, open: () => Promise<CodeqClient>): Promise<number> => {
  const parsed = parse(DLQ, argv)
  if (parsed === undefined) return EXIT.ok
  const action = parsed.positionals[0]
  if (action === undefined || !["list", "requeue", "purge"].includes(action)) throw new UsageError(`dlq needs an action: list, requeue or purge (got ${action ?? "none"})`)
  const tenant = required(parsed, "tenant")
  const client = await open()
  try {
    if (action === "list") {
      const entries = await client.tasks.deadLetters(tenant, optionalString(parsed, "command"))
      out(parsed, entries, entries, ["taskId", "command", "reason", "attempts", "deadLetteredAt"])
    } else if (action === "requeue") {
      const task = await client.tasks.requeue(tenant, taskId(parsed, action))
      out(parsed, task, [task], TASK_COLUMNS)
    } else {
      const id = taskId(parsed, action)
      await client.tasks.purge(tenant, id)
      out(parsed, { purged: id }, [{ purged: id }], ["purged"])
    }
    return EXIT.ok
  } finally {
    await client.close()
  }
}
