import { describe, expect, it } from "vitest"
import { useNatsServer, waitFor } from "./support/harness.js"
import { STATIC_TOKENS } from "./support/jwks.js"
import { useHttpApi } from "./support/httpApi.js"

const nats = useNatsServer()

describe("HTTP API: the task cycle, endpoint by endpoint", () => {
  const { call, dispatched } = useHttpApi(nats)
  let n = 0
  /** A command of its own for each test, so tests never take each other's tasks. */
  const command = () => `http-${++n}`
  const producer = STATIC_TOKENS.acmeProducer.token
  const worker = STATIC_TOKENS.acmeWorker.token

  const create = async (body: Record<string, unknown>) => {
    const res = await call("POST", "/v1/codeq/tasks", { token: producer, body })
    expect(res.status).toBe(202)
    return res.json as { id: string } & Record<string, unknown>
  }
  const claim = (commands: Array<string>, extra: Record<string, unknown> = {}, token: string = worker) =>
    call("POST", "/v1/codeq/tasks/claim", { token, body: { commands, waitSeconds: 10, ...extra } })

  it("creates a task with 202 and the task JSON, and GET returns it", async () => {
    const cmd = command()
    const task = await create({ command: cmd, payload: { jobId: "j-1" }, priority: 3 })
    expect(task).toMatchObject({ command: cmd, payload: { jobId: "j-1" }, priority: 3, status: "PENDING", attempts: 0, maxAttempts: 5, tenantId: "acme" })
    expect(task.traceParent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/)
    const got = await call("GET", `/v1/codeq/tasks/${task.id}`, { token: worker })
    expect(got.status).toBe(200)
    expect(got.json).toEqual(task)
  })

  it("returns the same task for a repeated idempotency key", async () => {
    const cmd = command()
    const first = await create({ command: cmd, idempotencyKey: "order-42" })
    const again = await create({ command: cmd, idempotencyKey: "order-42" })
    expect(again.id).toBe(first.id)
  })

  it("creates a batch with one result per item, refusing a bad item alone", async () => {
    const cmd = command()
    const res = await call("POST", "/v1/codeq/tasks/batch", {
      token: producer,
      body: { tasks: [{ command: cmd, payload: 1 }, { command: cmd, maxAttempts: 1000 }, { command: cmd, payload: 3, priority: 9 }] }
    })
    expect(res.status).toBe(200)
    const results = res.json.results as Array<Record<string, unknown>>
    expect(results).toHaveLength(3)
    expect(results[0]?.task).toMatchObject({ command: cmd, payload: 1 })
    expect(results[1]).toMatchObject({ field: "tasks[1].maxAttempts", rule: "range" })
    expect(String(results[1]?.error)).toMatch(/maxAttempts/)
    expect(results[2]?.task).toMatchObject({ priority: 9 })
  })

  it("long-polls a claim until a create wakes it, and answers 204 when nothing comes", async () => {
    const cmd = command()
    const started = Date.now()
    const pending = claim([cmd], { waitSeconds: 20 })
    // The scenario itself: the task is created while the claim is already waiting.
    await new Promise((resolve) => setTimeout(resolve, 500))
    const task = await create({ command: cmd })
    const createdAt = Date.now()
    const claimed = await pending
    const wokeAfter = Date.now() - createdAt
    console.log(`long-poll claim answered ${wokeAfter} ms after the create's 202 (waited ${Date.now() - started} ms in all)`)
    expect(claimed.status).toBe(200)
    expect(claimed.json).toMatchObject({ id: task.id, status: "IN_PROGRESS", workerId: "acme-worker-1", attempts: 1 })
    expect(claimed.json.traceParent).toBe(task.traceParent)
    // Answered when the work came, not when the 20 s wait ran out: a bound with margin, not a
    // latency claim (create→claimed latency is measured by `npm run bench -- e2e`).
    expect(wokeAfter).toBeLessThan(10_000)

    const before = Date.now()
    const none = await claim([command()], { waitSeconds: 1 })
    expect(none.status).toBe(204)
    expect(none.body).toBeUndefined()
    expect(Date.now() - before).toBeGreaterThanOrEqual(900)
  })

  it("claims up to `count` tasks in a batch, then 204", async () => {
    const cmd = command()
    for (let i = 0; i < 3; i++) await create({ command: cmd, payload: i })
    // A batch waits only for its first task: let all three be dispatched first.
    await waitFor(async () => (await dispatched(cmd)) === 3, { what: "three dispatched tasks" })
    const batch = (count: number) => call("POST", "/v1/codeq/tasks/claim/batch", { token: worker, body: { commands: [cmd], count, waitSeconds: 10 } })
    const first = await batch(2)
    expect(first.status).toBe(200)
    expect(first.json.tasks).toHaveLength(2)
    const second = await batch(5)
    expect(second.json.tasks).toHaveLength(1)
    expect((await call("POST", "/v1/codeq/tasks/claim/batch", { token: worker, body: { commands: [cmd], count: 1 } })).status).toBe(204)
  })

  it("extends the holder's lease on heartbeat", async () => {
    const cmd = command()
    const task = await create({ command: cmd })
    const claimed = await claim([cmd], { leaseSeconds: 30 })
    const hb = await call("POST", `/v1/codeq/tasks/${task.id}/heartbeat`, { token: worker, body: { extendSeconds: 120 } })
    expect(hb.status).toBe(200)
    expect(hb.json.ok).toBe(true)
    expect(Date.parse(String(hb.json.leaseUntil))).toBeGreaterThan(Date.parse(String(claimed.json.leaseUntil)))
    const empty = await call("POST", `/v1/codeq/tasks/${task.id}/heartbeat`, { token: worker })
    expect(empty.status).toBe(200)
  })

  it("gives an abandoned task back at once without using an attempt", async () => {
    const cmd = command()
    const task = await create({ command: cmd })
    await claim([cmd])
    const abandoned = await call("POST", `/v1/codeq/tasks/${task.id}/abandon`, { token: worker })
    expect(abandoned).toMatchObject({ status: 200, json: { status: "requeued" } })
    const again = await claim([cmd], {}, STATIC_TOKENS.acmeWorker2.token)
    expect(again.json).toMatchObject({ id: task.id, attempts: 1, workerId: "acme-worker-2" })
  })

  it("requeues a nacked task after its delay and dead-letters it on the last attempt", async () => {
    const cmd = command()
    const task = await create({ command: cmd, maxAttempts: 2 })
    await claim([cmd])
    const nacked = await call("POST", `/v1/codeq/tasks/${task.id}/nack`, { token: worker, body: { delaySeconds: 1, reason: "busy" } })
    expect(nacked).toMatchObject({ status: 200, json: { status: "requeued", delaySeconds: 1 } })
    const second = await claim([cmd])
    expect(second.json).toMatchObject({ id: task.id, attempts: 2 })
    const last = await call("POST", `/v1/codeq/tasks/${task.id}/nack`, { token: worker, body: { reason: "still busy" } })
    expect(last).toMatchObject({ status: 200, json: { status: "dlq" } })
    expect((await call("GET", `/v1/codeq/tasks/${task.id}`, { token: producer })).json.status).toBe("DEAD_LETTERED")
  })

  it("stores a COMPLETED result, serves it from GET result, and refuses a second submission with 409", async () => {
    const cmd = command()
    const task = await create({ command: cmd })
    await claim([cmd])
    const artifacts = [{ name: "report.txt", url: "https://files.test/report.txt" }]
    const submitted = await call("POST", `/v1/codeq/tasks/${task.id}/result`, { token: worker, body: { status: "COMPLETED", result: { ok: true }, artifacts } })
    expect(submitted.status).toBe(200)
    expect(submitted.json).toMatchObject({ taskId: task.id, status: "COMPLETED", result: { ok: true }, artifacts })
    const read = await call("GET", `/v1/codeq/tasks/${task.id}/result`, { token: producer })
    expect(read.status).toBe(200)
    expect(read.json.result).toEqual(submitted.json)
    expect(read.json.task).toMatchObject({ id: task.id, status: "COMPLETED" })
    const again = await call("POST", `/v1/codeq/tasks/${task.id}/result`, { token: worker, body: { status: "COMPLETED", result: { ok: false } } })
    expect(again).toMatchObject({ status: 409, json: { reason: "terminal" } })
  })

  it("stores a FAILED result with its error", async () => {
    const cmd = command()
    const task = await create({ command: cmd })
    await claim([cmd])
    const failed = await call("POST", `/v1/codeq/tasks/${task.id}/result`, { token: worker, body: { status: "FAILED", error: "boom" } })
    expect(failed.json).toMatchObject({ taskId: task.id, status: "FAILED", error: "boom" })
    expect((await call("GET", `/v1/codeq/tasks/${task.id}`, { token: producer })).json).toMatchObject({ status: "FAILED", error: "boom" })
  })

  it("long-polls GET result until the result lands, 404s at the deadline without one, and at once for no task", async () => {
    const cmd = command()
    const task = await create({ command: cmd })
    await claim([cmd])
    const waiting = call("GET", `/v1/codeq/tasks/${task.id}/result?waitSeconds=20`, { token: producer })
    const submitted = await call("POST", `/v1/codeq/tasks/${task.id}/result`, { token: worker, body: { status: "COMPLETED", result: { n: 1 } } })
    expect(submitted.status).toBe(200)
    const got = await waiting
    expect(got.status).toBe(200)
    expect(got.json.result).toMatchObject({ status: "COMPLETED", result: { n: 1 } })

    const other = await create({ command: cmd })
    const before = Date.now()
    const timedOut = await call("GET", `/v1/codeq/tasks/${other.id}/result?waitSeconds=1`, { token: producer })
    expect(timedOut).toMatchObject({ status: 404, json: { error: "result not found" } })
    expect(Date.now() - before).toBeGreaterThanOrEqual(900)
    const missing = await call("GET", `/v1/codeq/tasks/00000000-0000-4000-8000-000000000000/result?waitSeconds=20`, { token: producer })
    expect(missing).toMatchObject({ status: 404, json: { error: "task not found" } })
  })

  it("settles a batch of results item by item", async () => {
    const cmd = command()
    const a = await create({ command: cmd })
    const b = await create({ command: cmd })
    await call("POST", "/v1/codeq/tasks/claim/batch", { token: worker, body: { commands: [cmd], count: 2, waitSeconds: 10 } })
    const unknown = "00000000-0000-4000-8000-000000000001"
    const res = await call("POST", "/v1/codeq/tasks/batch/results", {
      token: worker,
      body: {
        results: [
          { taskId: a.id, status: "COMPLETED", result: { a: 1 } },
          { taskId: b.id, status: "FAILED", error: "bad input" },
          { taskId: unknown, status: "COMPLETED", result: {} }
        ]
      }
    })
    expect(res.status).toBe(200)
    expect(res.json.results).toEqual([
      { taskId: a.id, result: expect.objectContaining({ status: "COMPLETED", result: { a: 1 } }) },
      { taskId: b.id, result: expect.objectContaining({ status: "FAILED", error: "bad input" }) },
      { taskId: unknown, error: "task not found", code: 404 }
    ])
  })
})
