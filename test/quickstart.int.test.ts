/**
 * The README's quickstart, run as written (issue 12): `npm start` with nothing listening at
 * NATS_URL starts an embedded nats-server; the README's curl creates a task with the README's
 * development token; the example worker completes it; `codeq replay --task` prints its tree; and
 * SIGTERM to the `npm start` process leaves no process and no bound port behind. (`npm ci` is the
 * step before: CI runs it on a fresh clone before the tests.)
 */
import { execFile, spawn, type ChildProcess } from "node:child_process"
import { readFile, mkdtemp } from "node:fs/promises"
import { connect } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { freePort } from "../src/testing/natsServer.js"
import { waitFor } from "./support/harness.js"

const MARKER = "<!-- codeq:quickstart -->"

/** The README's quickstart block: each step a comment line and the command under it. */
const quickstart = async (): Promise<Array<string>> => {
  const readme = await readFile(new URL("../README.md", import.meta.url), "utf8")
  const at = readme.indexOf(MARKER)
  if (at < 0) throw new Error(`README.md has no ${MARKER} block`)
  const block = /```sh\n([\s\S]*?)```/.exec(readme.slice(at))?.[1]
  if (block === undefined) throw new Error(`README.md has ${MARKER} but no \`\`\`sh block after it`)
  return block
    .split(/\n(?=# )/)
    .map((step) => step.trim())
    .filter((step) => step !== "")
}

const listening = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

const alive = (pid: number | undefined): boolean => {
  if (pid === undefined) return false
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

const sh = (script: string, env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    execFile("bash", ["-euo", "pipefail", "-c", script], { env, timeout: 60_000 }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr })
    )
  })

describe("README quickstart", () => {
  it("goes from npm start to a completed, replayed task, and leaves nothing behind on SIGTERM", async () => {
    const steps = await quickstart()
    expect(steps.map((s) => s.split("\n")[0])).toHaveLength(3)
    const [createStep = "", workerStep = "", replayStep = ""] = steps
    const natsPort = await freePort()
    const httpPort = await freePort()
    expect(await listening(natsPort)).toBe(false)
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      NATS_URL: `nats://127.0.0.1:${natsPort}`,
      CODEQ_HTTP_PORT: String(httpPort),
      CODEQ_DATA_DIR: join(await mkdtemp(join(tmpdir(), "codeq-quickstart-")), "nats")
    }
    const local = (step: string) => step.replaceAll("127.0.0.1:8080", `127.0.0.1:${httpPort}`)
    const start: ChildProcess = spawn("npm", ["start"], { env, stdio: ["ignore", "pipe", "pipe"] })
    let output = ""
    start.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()))
    start.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()))
    const children: Array<ChildProcess> = [start]
    try {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${httpPort}/readyz`).catch(() => undefined))?.ok === true, { timeoutMs: 90_000, what: `npm start to serve (output so far:\n${output.slice(-2000)})` })
      expect(output).toContain("started an embedded nats-server -js")
      expect(await listening(natsPort)).toBe(true)
      const servePid = Number(/"pid":(\d+)/.exec(output)?.[1])

      const created = await sh(local(createStep), env)
      expect(created.code, created.stderr).toBe(0)
      const task = JSON.parse(created.stdout) as { id: string; status: string }
      expect(task.status).toBe("PENDING")

      const worker = spawn("bash", ["-c", `exec ${local(workerStep).split("\n").filter((l) => !l.startsWith("#")).join(" ")}`], { env, stdio: "ignore", detached: true })
      children.push(worker)
      const done = await waitFor(
        async () => {
          const res = await fetch(`http://127.0.0.1:${httpPort}/v1/codeq/tasks/${task.id}`, { headers: { Authorization: "Bearer dev-producer-token" } })
          const body = (await res.json()) as { status: string }
          return body.status === "COMPLETED" ? body : undefined
        },
        { timeoutMs: 60_000, what: "the example worker to complete the task" }
      )
      expect(done.status).toBe("COMPLETED")
      process.kill(-(worker.pid ?? 0), "SIGTERM")

      const replayed = await sh(local(replayStep).replaceAll("$TASK_ID", task.id), env)
      expect(replayed.code, replayed.stderr).toBe(0)
      expect(replayed.stdout).toContain(task.id)
      for (const span of ["codeq.task.create", "codeq.task.claim", "codeq.task.submit_result"]) expect(replayed.stdout).toContain(span)

      // npm forwards the signal to the broker and ends with it (or 0); what must hold is below.
      const exited = new Promise<string>((resolve) => start.once("exit", (code, signal) => resolve(signal ?? String(code))))
      start.kill("SIGTERM")
      expect(["SIGTERM", "0"]).toContain(await exited)
      await waitFor(async () => !alive(servePid) && !(await listening(natsPort)) && !(await listening(httpPort)), { timeoutMs: 10_000, what: "no process and no bound port after SIGTERM" })
    } finally {
      for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
    }
  }, 240_000)
})
