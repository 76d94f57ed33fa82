/**
 * The `codeq` binary as operators run it (dist/src/cli/main.js, built by the global setup), against
 * a real nats-server: every command, its --help, its errors and exit codes.
 */
import { spawn } from "node:child_process"
import { mkdtemp, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { CodeqClient } from "../src/sdk/client.js"
import { startBroker, type RunningBroker } from "../src/broker.js"
import { CODEQ_BIN, codeqEnv, runCodeq, type CodeqRun } from "./support/cli.js"
import { brokerConfig, freshNaming, projectionsCaughtUp, useNatsServer, waitFor } from "./support/harness.js"

const nats = useNatsServer()
const naming = freshNaming()
const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => codeqEnv(nats.url(), naming, extra)
const codeq = (args: ReadonlyArray<string>, extra: Record<string, string> = {}): Promise<CodeqRun> => runCodeq(args, env(extra))

const json = <T>(run: CodeqRun): T => {
  expect(run.stderr).toBe("")
  expect(run.code).toBe(0)
  return JSON.parse(run.stdout) as T
}

let broker: RunningBroker
let client: CodeqClient
beforeAll(async () => {
  broker = await startBroker(brokerConfig(nats.url(), naming))
  client = await CodeqClient.connect({ servers: nats.url(), naming })
})
afterAll(async () => {
  await client.close()
  await broker.stop()
})

describe("codeq, the command line", () => {
  it("lists its commands, and answers an unknown command, flag or action with exit 2 and one line", async () => {
    const help = await codeq(["--help"])
    expect(help.code).toBe(0)
    for (const command of ["serve", "worker", "tasks", "dlq", "queues", "replay", "streams", "projections", "config"]) expect(help.stdout).toContain(`  ${command}`)
    for (const args of [["frobnicate"], ["tasks", "list", "--tenant", "acme", "--bogus"], ["tasks", "explode", "--tenant", "acme"], ["tasks", "list"], ["tasks", "list", "--tenant", "acme", "--limit", "5000"]]) {
      const run = await codeq(args)
      expect(run.code, args.join(" ")).toBe(2)
      expect(run.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1)
      expect(run.stderr).toMatch(/^codeq: /)
    }
    expect((await codeq(["tasks", "list", "--tenant", "acme", "--limit", "5000"])).stderr).toContain("--limit must be an integer from 1 to 1000")
  })

  it("prints --help for every command", async () => {
    for (const command of ["serve", "worker", "tasks", "dlq", "queues", "streams", "projections", "config"]) {
      const run = await codeq([command, "--help"])
      expect(run.code, command).toBe(0)
      expect(run.stdout, command).toMatch(new RegExp(`^usage: codeq ${command}`))
    }
  })

  it("applies and shows the streams", async () => {
    const applied = json<Array<{ stream: string; action: string }>>(await codeq(["streams", "apply", "--json"]))
    expect(applied.map((a) => a.action)).toEqual(["unchanged", "unchanged", "unchanged"])
    const shown = await codeq(["streams", "show"])
    expect(shown.stdout).toContain(`${naming.streamPrefix}_EVENTS`)
  })

  it("creates, gets, lists and cancels a task, and refuses bad input with the field and rule", async () => {
    const created = json<{ id: string; status: string }>(await codeq(["tasks", "create", "--tenant", "acme", "--command", "cli-job", "--payload", '{"n":1}', "--priority", "3", "--json"]))
    expect(created.status).toBe("PENDING")
    expect(json<{ id: string }>(await codeq(["tasks", "get", "--tenant", "acme", created.id, "--json"])).id).toBe(created.id)
    await waitFor(async () => (await codeq(["tasks", "list", "--tenant", "acme", "--command", "cli-job"])).stdout.includes(created.id), { what: "the listing" })
    expect(json<{ status: string }>(await codeq(["tasks", "cancel", "--tenant", "acme", created.id, "--json"])).status).toBe("CANCELLED")
    const refused = await codeq(["tasks", "create", "--tenant", "acme", "--command", "bad command"])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(/command must match/)
    const missing = await codeq(["tasks", "get", "--tenant", "acme", "00000000-0000-4000-8000-000000000000"])
    expect(missing.stderr).toMatch(/not found/)
  })

  it("runs an example worker that completes tasks, and stops on SIGTERM", async () => {
    const created = json<{ id: string }>(await codeq(["tasks", "create", "--tenant", "acme", "--command", "cli-work", "--json"]))
    const child = spawn(process.execPath, [CODEQ_BIN, "worker", "--tenant", "acme", "--command", "cli-work", "--concurrency", "2"], { env: env(), stdio: "ignore" })
    try {
      await waitFor(async () => (await client.tasks.get("acme", created.id)).status === "COMPLETED", { what: "the worker to complete the task" })
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
      child.kill("SIGTERM")
      expect(await exited).toBe(0)
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL")
    }
    expect((await client.tasks.get("acme", created.id)).result).toMatchObject({ ok: true })
  })

  it("lists, requeues and purges dead letters, and shows the queues", async () => {
    const task = await client.producer("acme").create({ command: "cli-dlq", maxAttempts: 1 })
    const deadLetter = async () => {
      const claimed = await client.tasks.claim("acme", ["cli-dlq"], { workerId: "w", waitSeconds: 10 })
      await client.tasks.settleLease("acme", claimed?.task.id ?? "", { workerId: "w" }, { type: "nack", reason: "no", delaySeconds: 0 })
    }
    await deadLetter()
    await waitFor(async () => (await codeq(["dlq", "list", "--tenant", "acme"])).stdout.includes(task.id), { what: "the dead letter to be listed" })
    expect(json<{ status: string }>(await codeq(["dlq", "requeue", "--tenant", "acme", task.id, "--json"])).status).toBe("PENDING")
    await deadLetter()
    await waitFor(async () => (await codeq(["dlq", "list", "--tenant", "acme", "--command", "cli-dlq", "--json"])).stdout.includes(task.id), { what: "the second dead letter" })
    expect(json<{ purged: string }>(await codeq(["dlq", "purge", "--tenant", "acme", task.id, "--json"])).purged).toBe(task.id)
    await client.producer("acme").create({ command: "cli-queue", priority: 7 })
    await waitFor(() => projectionsCaughtUp(broker, client.nc, naming), { what: "the read model" })
    const queues = json<{ commands: Array<{ command: string; ready: number }> }>(await codeq(["queues", "--tenant", "acme", "--json"]))
    expect(queues.commands.find((q) => q.command === "cli-queue")?.ready).toBe(1)
    expect((await codeq(["queues", "--tenant", "acme"])).stdout).toMatch(/cli-queue\s+7\s+1/)
  })

  it("prints the effective configuration from a file under the environment, secrets masked, and names a bad key, value and rule", async () => {
    const dir = await mkdtemp(join(tmpdir(), "codeq-config-"))
    const file = join(dir, "codeq.yaml")
    await writeFile(file, "replicas: 1\ntracingSampleRatio: 0.5\nwebhookHmacSecret: s3cret-value\nhttpPort: 9090\n")
    const printed = json<Record<string, string>>(await codeq(["config", "print", "--json"], { CODEQ_CONFIG: file, CODEQ_HTTP_PORT: "9191" }))
    expect(printed).toMatchObject({ replicas: "1", tracingSampleRatio: "0.5", webhookHmacSecret: "[secret]", httpPort: "9191" })
    expect(JSON.stringify(printed)).not.toContain("s3cret-value")
    const bad = await codeq(["config", "print"], { CODEQ_REPLICAS: "9" })
    expect(bad.code).toBe(1)
    expect(bad.stderr.trim()).toBe('codeq: config: replicas (CODEQ_REPLICAS) = "9": must be a number from 1 to 5')
    await writeFile(file, "replicaz: 3\n")
    expect((await codeq(["config", "print"], { CODEQ_CONFIG: file })).stderr).toMatch(/unknown key replicaz/)
  })

  it("says in one line that nothing answers at NATS_URL", async () => {
    const run = await codeq(["tasks", "list", "--tenant", "acme"], { NATS_URL: "nats://127.0.0.1:1" })
    expect(run.code).toBe(1)
    expect(run.stderr.trim()).toBe("codeq: nothing answers at nats://127.0.0.1:1 (connection refused); start a NATS server with JetStream (nats-server -js) or set NATS_URL")
  })

  it("rebuilds a projection from the log", async () => {
    await broker.stop()
    try {
      const run = await codeq(["projections", "rebuild", "task-state"])
      expect(json<{ rebuilt: boolean; events: number }>(run)).toMatchObject({ rebuilt: true })
    } finally {
      broker = await startBroker(brokerConfig(nats.url(), naming))
    }
  })
})
