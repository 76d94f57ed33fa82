/**
 * `codeq replay --audit` against a real log: green on tasks the broker wrote; naming the task and
 * the rule for events appended by hand that break a chain (no traceparent, a foreign trace id, a
 * parent span that is no span of the task, a span id used twice); following new events until
 * SIGINT; and selections (trace, command, tenant, a window that starts mid-task) that read only
 * what they name without false alarms.
 */
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { headers } from "nats"
import { startBroker, type RunningBroker } from "../src/broker.js"
import { replayLog, wireTargetOf, type Problem, type ReplayFilter } from "../src/replay/index.js"
import { CodeqClient } from "../src/sdk/client.js"
import { eventSubject } from "../streams/definitions.js"
import { CODEQ_BIN, codeqEnv, runCodeq, type CodeqRun } from "./support/cli.js"
import { brokerConfig, freshNaming, useNatsServer, waitFor } from "./support/harness.js"

const nats = useNatsServer()
const naming = freshNaming()
const TENANT = "acme"

/** `codeq replay <args>` through the built binary. */
const codeq = (args: ReadonlyArray<string>): Promise<CodeqRun> => runCodeq(["replay", ...args], codeqEnv(nats.url(), naming))

describe("replay --audit", () => {
  let broker: RunningBroker
  let client: CodeqClient
  beforeAll(async () => {
    broker = await startBroker(brokerConfig(nats.url(), naming))
    client = await CodeqClient.connect({ servers: nats.url(), naming })
  })
  afterAll(async () => {
    await client?.close()
    await broker?.stop()
  })

  /** A task run to completion the ordinary way. */
  const completed = async (command: string, tenant = TENANT) => {
    const task = await client.producer(tenant).create({ command })
    const claimed = await client.tasks.claim(tenant, [command], { workerId: "auditor-test", waitSeconds: 10 })
    expect(claimed?.task.id).toBe(task.id)
    await client.tasks.settleLease(tenant, task.id, { workerId: "auditor-test" }, { type: "complete" })
    return task
  }

  /** A created task with one more event appended by hand, its trace headers as given. */
  const handAppended = async (command: string, trace: (ids: { traceId: string; createSpan: string; claimSpan: string }) => Record<string, string>, type = "TaskCancelled") => {
    const task = await client.producer(TENANT).create({ command })
    const claimed = await client.tasks.claim(TENANT, [command], { workerId: "auditor-test", waitSeconds: 10 })
    expect(claimed?.task.id).toBe(task.id)
    const history = await client.log.readTask(TENANT, task.id)
    const [, traceId = "", createSpan = ""] = history.events[0]?.trace?.traceparent.split("-") ?? []
    const claimSpan = history.events[1]?.trace?.traceparent.split("-")[2] ?? ""
    const h = headers()
    h.set("Codeq-Event", type)
    for (const [key, value] of Object.entries(trace({ traceId, createSpan, claimSpan }))) h.set(key, value)
    h.set("Codeq-Prev-Seq", String(history.version))
    h.set("Nats-Expected-Last-Subject-Sequence", String(history.version))
    const body = { v: 1, type, taskId: task.id, tenant: TENANT, at: new Date().toISOString(), reason: "by hand" }
    const result = await client.log.publisher.publish(eventSubject(naming, TENANT, task.id), new TextEncoder().encode(JSON.stringify(body)), h, history.version)
    expect(result.ok).toBe(true)
    return task
  }

  const start = () => `${BigInt(Date.now()) * 1_000_000n}`
  const problemsOf = async (filter: ReplayFilter = {}): Promise<Array<Problem>> => {
    const out: Array<Problem> = []
    await replayLog({ nc: client.nc, wire: wireTargetOf(client.nc, [nats.url()]) }, naming, { detail: "ids", filter }, (t) => void out.push(...t.problems))
    return out
  }

  it("is green on tasks the broker wrote, from the binary as from the library", async () => {
    await completed("clean")
    await completed("clean")
    expect(await problemsOf()).toEqual([])
    const run = await codeq(["--audit"])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toMatch(/^audit: 2 tasks, 6 spans, 6 events — no problems$/m)
  })

  it("names the task and the rule for each hand-appended event that breaks a chain, and exits 3", async () => {
    const noTraceparent = await handAppended("broken", ({ createSpan }) => ({ "Codeq-Parent-Span": createSpan, "Codeq-Span-Start": start() }))
    const foreignTrace = await handAppended("broken", ({ createSpan }) => ({
      traceparent: `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-01`,
      "Codeq-Parent-Span": createSpan,
      "Codeq-Span-Start": start()
    }))
    const unknownParent = await handAppended("broken", ({ traceId }) => ({
      traceparent: `00-${traceId}-${randomBytes(8).toString("hex")}-01`,
      "Codeq-Parent-Span": randomBytes(8).toString("hex"),
      "Codeq-Span-Start": start()
    }))
    const duplicate = await handAppended("broken", ({ traceId, createSpan, claimSpan }) => ({
      traceparent: `00-${traceId}-${claimSpan}-01`,
      "Codeq-Parent-Span": createSpan,
      "Codeq-Span-Start": start()
    }))
    const found = (await problemsOf()).map((p) => `${p.taskId} ${p.rule}`)
    expect(found.sort()).toEqual(
      [`${noTraceparent.id} trace-headers`, `${foreignTrace.id} trace-id`, `${unknownParent.id} parent-create`, `${duplicate.id} duplicate-span`].sort()
    )

    const run = await codeq(["--audit"])
    expect(run.code).toBe(3)
    expect(run.stdout).toMatch(/4 problems/)
    expect(run.stdout).toContain(`task acme/${noTraceparent.id} seq`)
    expect(run.stdout).toMatch(new RegExp(`task acme/${noTraceparent.id} seq \\d+ \\[trace-headers\\]: TaskCancelled has no traceparent`))
    expect(run.stdout).toMatch(new RegExp(`task acme/${foreignTrace.id} seq \\d+ \\[trace-id\\]: TaskCancelled is on trace [0-9a-f]{32}, the task's create on`))
    expect(run.stdout).toMatch(new RegExp(`task acme/${unknownParent.id} seq \\d+ \\[parent-create\\]: .*not in the task's log \\(unknown\\)`))
    expect(run.stdout).toMatch(new RegExp(`task acme/${duplicate.id} seq \\d+ \\[duplicate-span\\]: TaskCancelled reuses span id`))

    // The tree marks the broken spans; an event without traceparent has none and is listed.
    const tree = await codeq(["--task", unknownParent.id])
    expect(tree.code).toBe(0)
    expect(tree.stdout).toMatch(/⚠ \[parent-create\] seq \d+/)
    const untraced = await codeq(["--task", noTraceparent.id, "--format", "tree"])
    expect(untraced.stdout).toMatch(/⚠ \[trace-headers\] seq \d+: TaskCancelled has no traceparent/)
  })

  it("keeps auditing new events with --follow until SIGINT, then prints the summary", async () => {
    const child = spawn(process.execPath, [CODEQ_BIN, "replay", "--audit", "--follow", "--tenant", "follow-t"], { env: codeqEnv(nats.url(), naming), stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()))
    const exited = new Promise<number>((resolve) => child.on("exit", (code) => resolve(code ?? -1)))
    // Appended after the follower started: it must see them as they come.
    const ok = await completed("followed", "follow-t")
    const task = await client.producer("follow-t").create({ command: "followed" })
    const h = headers()
    h.set("Codeq-Event", "TaskCancelled")
    h.set("Codeq-Prev-Seq", String((await client.log.readTask("follow-t", task.id)).version))
    const body = { v: 1, type: "TaskCancelled", taskId: task.id, tenant: "follow-t", at: new Date().toISOString(), reason: "by hand" }
    expect((await client.log.publisher.publish(eventSubject(naming, "follow-t", task.id), new TextEncoder().encode(JSON.stringify(body)), h)).ok).toBe(true)
    await waitFor(() => stdout.includes(`task follow-t/${task.id}`), { timeoutMs: 30_000, what: "the follower to report the new problem" })
    expect(stdout).toMatch(new RegExp(`problem: task follow-t/${task.id} seq \\d+ \\[trace-headers\\]`))
    expect(stdout).not.toContain(ok.id)
    child.kill("SIGINT")
    expect(await exited).toBe(3)
    expect(stdout).toMatch(/audit: 2 tasks, 4 spans, 5 events — 1 problem/)
  })

  it("reads only what a selection names, and audits a window that starts mid-task against the task's earlier events", async () => {
    const a = await completed("pick-me")
    const b = await completed("other")
    const history = await client.log.readTask(TENANT, a.id)
    const traceId = history.events[0]?.trace?.traceparent.split("-")[1] ?? ""
    const byTrace: Array<string> = []
    await replayLog({ nc: client.nc, wire: wireTargetOf(client.nc, [nats.url()]) }, naming, { detail: "spans", filter: { traceId } }, (t) => void byTrace.push(t.taskId))
    expect(byTrace).toEqual([a.id])
    const byCommand: Array<string> = []
    await replayLog({ nc: client.nc }, naming, { detail: "ids", filter: { command: "other" }, reader: "nats" }, (t) => void byCommand.push(t.taskId))
    expect(byCommand).toEqual([b.id])
    const taskIds = async (filter: ReplayFilter) => {
      const out: Array<string> = []
      await replayLog({ nc: client.nc, wire: wireTargetOf(client.nc, [nats.url()]) }, naming, { detail: "ids", filter }, (t) => void out.push(t.taskId))
      return out
    }
    const createdAt = history.events[0]?.time ?? new Date()
    expect(await taskIds({ since: new Date(Date.now() + 60_000) })).toEqual([])
    expect(await taskIds({ until: new Date(createdAt.getTime() - 60_000) })).toEqual([])
    expect(await taskIds({ since: createdAt, tenant: TENANT })).toEqual([a.id, b.id])
    const claimSeq = history.events[1]?.seq ?? 0
    const windowed: Array<{ id: string; continued: boolean; spans: number; problems: number }> = []
    await replayLog({ nc: client.nc, wire: wireTargetOf(client.nc, [nats.url()]) }, naming, { detail: "spans", filter: { tenant: TENANT, fromSeq: claimSeq, toSeq: claimSeq + 1 } }, (t) =>
      void windowed.push({ id: t.taskId, continued: t.continued, spans: t.spans.length, problems: t.problems.length })
    )
    expect(windowed.find((w) => w.id === a.id)).toEqual({ id: a.id, continued: true, spans: 2, problems: 0 })
    const run = await codeq(["--audit", "--task", a.id, "--format", "jsonl"])
    expect(run.code).toBe(0)
    const lines = run.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(lines.slice(0, -1).map((l) => l.name)).toEqual(["codeq.task.create", "codeq.task.claim", "codeq.task.submit_result"])
    expect(lines.at(-1)).toMatchObject({ audit: { tasks: 1, spans: 3, problems: 0 } })
  })

  it("answers bad arguments with exit 2 and a line naming the option", async () => {
    const unknown = await codeq(["--bogus"])
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toMatch(/--bogus/)
    const bad = await codeq(["--from-seq", "zero"])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/^codeq: --from-seq must be a stream sequence/m)
  })
})
