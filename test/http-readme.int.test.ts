import { execFile } from "node:child_process"
import { readFile } from "node:fs/promises"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startBroker, type RunningBroker } from "../src/broker.js"
import { startHttpServer, type RunningHttpServer } from "../src/http/index.js"
import { CodeqClient } from "../src/sdk/client.js"
import { brokerConfig, freshNaming, useNatsServer } from "./support/harness.js"

const run = promisify(execFile)
const nats = useNatsServer()

/** The README's HTTP examples follow this marker, in the next ```sh block. */
const MARKER = "<!-- codeq:http-examples -->"

const examples = async (): Promise<{ source: string; script: string }> => {
  const readme = await readFile(new URL("../README.md", import.meta.url), "utf8")
  const at = readme.indexOf(MARKER)
  if (at < 0) throw new Error(`README.md has no ${MARKER} block: the examples it shows must be the ones that run`)
  const block = /```sh\n([\s\S]*?)```/.exec(readme.slice(at))
  if (block?.[1] === undefined) throw new Error(`README.md has ${MARKER} but no \`\`\`sh block after it`)
  return { source: "README.md", script: block[1] }
}

/** Each step is a comment line and the command under it. */
const steps = (script: string): Array<string> =>
  script
    .split(/\n(?=# )/)
    .map((step) => step.trim())
    .filter((step) => step !== "")

describe("README: the HTTP curl examples", () => {
  const naming = freshNaming()
  let broker: RunningBroker
  let client: CodeqClient
  let http: RunningHttpServer

  beforeAll(async () => {
    broker = await startBroker(brokerConfig(nats.url(), naming))
    client = await CodeqClient.connect({ servers: nats.url(), naming })
    http = await startHttpServer({
      client,
      auth: {
        staticTokens: [
          { token: "dev-producer-token", tenant: "acme", subject: "dev-producer", role: "producer" },
          { token: "dev-worker-token", tenant: "acme", subject: "dev-worker", role: "worker" }
        ]
      },
      port: 0,
      host: "127.0.0.1"
    })
  })
  afterAll(async () => {
    await http.close()
    await client.close()
    await broker.stop()
  })

  it("creates, claims, completes and reads a task exactly as the README shows", async () => {
    const { source, script } = await examples()
    const commands = steps(script)
    expect(commands, `examples from ${source}`).toHaveLength(4)
    const env = { ...process.env, CODEQ_URL: http.url, PRODUCER_TOKEN: "dev-producer-token", WORKER_TOKEN: "dev-worker-token", TASK_ID: "" }
    const outputs: Array<{ status: number; body: Record<string, unknown> }> = []
    for (const command of commands) {
      const { stdout } = await run("bash", ["-euo", "pipefail", "-c", command], { env })
      const lines = stdout.trimEnd().split("\n")
      const status = Number(lines.pop())
      const body = JSON.parse(lines.join("\n")) as Record<string, unknown>
      outputs.push({ status, body })
      if (env.TASK_ID === "") env.TASK_ID = String(body.id)
    }
    const [created, claimed, completed, read] = outputs
    expect(created).toMatchObject({ status: 202, body: { command: "GENERATE_MASTER", status: "PENDING", priority: 3 } })
    expect(claimed).toMatchObject({ status: 200, body: { id: env.TASK_ID, status: "IN_PROGRESS", workerId: "dev-worker" } })
    expect(completed).toMatchObject({ status: 200, body: { taskId: env.TASK_ID, status: "COMPLETED", result: { ok: true } } })
    expect(read).toMatchObject({ status: 200, body: { task: { id: env.TASK_ID, status: "COMPLETED" }, result: { status: "COMPLETED" } } })
  })
})
