/**
 * HTTP rough edges (issue 12): cancel, the result long-poll of a task that ended without a result,
 * batch create with invalid items, and bodies that are not JSON.
 */
import { describe, expect, it } from "vitest"
import { useNatsServer, waitFor } from "./support/harness.js"
import { STATIC_TOKENS } from "./support/jwks.js"
import { useHttpApi } from "./support/httpApi.js"

const nats = useNatsServer()

describe("HTTP API: cancel, results that will not come, partial batches, media types", () => {
  const { call, dispatched } = useHttpApi(nats)
  let n = 0
  const command = () => `edge-${++n}`
  const producer = STATIC_TOKENS.acmeProducer.token
  const worker = STATIC_TOKENS.acmeWorker.token
  const admin = STATIC_TOKENS.acmeAdmin.token

  const create = async (body: Record<string, unknown>) => {
    const res = await call("POST", "/v1/codeq/tasks", { token: producer, body })
    expect(res.status).toBe(202)
    return res.json as { id: string } & Record<string, unknown>
  }
  const claim = (cmd: string) => call("POST", "/v1/codeq/tasks/claim", { token: worker, body: { commands: [cmd], waitSeconds: 10 } })
  const cancel = (id: string, token: string = producer, body?: unknown) => call("POST", `/v1/codeq/tasks/${id}/cancel`, { token, ...(body !== undefined ? { body } : {}) })
  const timed = async <T>(run: () => Promise<T>): Promise<{ value: T; ms: number }> => {
    const started = Date.now()
    const value = await run()
    return { value, ms: Date.now() - started }
  }

  it("cancels a pending task with 200 and the task, for its producer or an admin of the tenant", async () => {
    const cmd = command()
    const task = await create({ command: cmd })
    const cancelled = await cancel(task.id, producer, { reason: "customer withdrew" })
    expect(cancelled).toMatchObject({ status: 200, json: { id: task.id, status: "CANCELLED", tenantId: "acme" } })
    expect((await call("GET", `/v1/codeq/tasks/${task.id}`, { token: producer })).json.status).toBe("CANCELLED")
    const other = await create({ command: cmd })
    expect(await cancel(other.id, admin)).toMatchObject({ status: 200, json: { status: "CANCELLED" } })
    // Nothing of the command is left to claim.
    expect((await call("POST", "/v1/codeq/tasks/claim", { token: worker, body: { commands: [cmd], waitSeconds: 1 } })).status).toBe(204)
  })

  it("cancels a task in progress: its worker's result is then refused with 409", async () => {
    const cmd = command()
    const task = await create({ command: cmd })
    expect((await claim(cmd)).json.id).toBe(task.id)
    expect((await cancel(task.id)).json.status).toBe("CANCELLED")
    const late = await call("POST", `/v1/codeq/tasks/${task.id}/result`, { token: worker, body: { status: "COMPLETED", result: {} } })
    expect(late).toMatchObject({ status: 409, json: { reason: "terminal" } })
  })

  it("refuses to cancel a task that has ended (409), another tenant's (404), and with a worker's token (403)", async () => {
    const cmd = command()
    const task = await create({ command: cmd })
    await claim(cmd)
    await call("POST", `/v1/codeq/tasks/${task.id}/result`, { token: worker, body: { status: "COMPLETED", result: { ok: true } } })
    expect(await cancel(task.id)).toMatchObject({ status: 409, json: { reason: "terminal" } })
    expect(String((await cancel(task.id)).json.error)).toMatch(/COMPLETED/)
    const pending = await create({ command: cmd })
    expect(await cancel(pending.id, STATIC_TOKENS.globexProducer.token)).toMatchObject({ status: 404, json: { error: "task not found" } })
    expect(await cancel(pending.id, STATIC_TOKENS.globexAdmin.token)).toMatchObject({ status: 404 })
    expect(await cancel(pending.id, worker)).toMatchObject({ status: 403, json: { rule: "role" } })
    expect(await cancel(pending.id, producer, { reason: "x".repeat(1025) })).toMatchObject({ status: 400, json: { field: "reason", rule: "length" } })
    expect((await call("GET", `/v1/codeq/tasks/${pending.id}`, { token: producer })).json.status).toBe("PENDING")
  })

  it("answers GET result at once with 409 for a dead-lettered or cancelled task instead of waiting out waitSeconds", async () => {
    const cmd = command()
    const dead = await create({ command: cmd, maxAttempts: 1 })
    await claim(cmd)
    expect((await call("POST", `/v1/codeq/tasks/${dead.id}/nack`, { token: worker, body: { reason: "poison" } })).json.status).toBe("dlq")
    const deadRead = await timed(() => call("GET", `/v1/codeq/tasks/${dead.id}/result?waitSeconds=30`, { token: producer }))
    expect(deadRead.value).toMatchObject({ status: 409, json: { reason: "dead_lettered" } })
    expect(String(deadRead.value.json.error)).toMatch(/ended DEAD_LETTERED without a result/)
    // At once rather than after the 30 s wait: a bound with a wide margin, not a latency claim.
    expect(deadRead.ms).toBeLessThan(10_000)

    const cancelled = await create({ command: cmd })
    await cancel(cancelled.id)
    const cancelledRead = await timed(() => call("GET", `/v1/codeq/tasks/${cancelled.id}/result?waitSeconds=30`, { token: producer }))
    expect(cancelledRead.value).toMatchObject({ status: 409, json: { reason: "cancelled" } })
    expect(cancelledRead.ms).toBeLessThan(10_000)
    // Without a wait too.
    expect((await call("GET", `/v1/codeq/tasks/${cancelled.id}/result`, { token: producer })).json.reason).toBe("cancelled")
  })

  it("ends a waiting GET result as soon as the task is dead-lettered or cancelled, and answers 200 for FAILED", async () => {
    const cmd = command()
    const dying = await create({ command: cmd, maxAttempts: 1 })
    await claim(cmd)
    const waiting = timed(() => call("GET", `/v1/codeq/tasks/${dying.id}/result?waitSeconds=60`, { token: producer }))
    await new Promise((resolve) => setTimeout(resolve, 300))
    await call("POST", `/v1/codeq/tasks/${dying.id}/nack`, { token: worker, body: {} })
    const woke = await waiting
    expect(woke.value).toMatchObject({ status: 409, json: { reason: "dead_lettered" } })
    // Ended by the task's end, not by the 60 s wait.
    expect(woke.ms).toBeLessThan(20_000)

    const pending = await create({ command: cmd })
    const waitingCancel = timed(() => call("GET", `/v1/codeq/tasks/${pending.id}/result?waitSeconds=60`, { token: producer }))
    await new Promise((resolve) => setTimeout(resolve, 300))
    await cancel(pending.id)
    const wokeCancel = await waitingCancel
    expect(wokeCancel.value).toMatchObject({ status: 409, json: { reason: "cancelled" } })
    expect(wokeCancel.ms).toBeLessThan(20_000)

    const failing = await create({ command: cmd })
    await claim(cmd)
    await call("POST", `/v1/codeq/tasks/${failing.id}/result`, { token: worker, body: { status: "FAILED", error: "boom" } })
    const failed = await call("GET", `/v1/codeq/tasks/${failing.id}/result?waitSeconds=10`, { token: producer })
    expect(failed).toMatchObject({ status: 200, json: { task: { status: "FAILED" }, result: { status: "FAILED", error: "boom" } } })
  })

  it("creates the valid items of a batch and answers each invalid one with its field and rule, in order", async () => {
    const cmd = command()
    const res = await call("POST", "/v1/codeq/tasks/batch", {
      token: producer,
      body: {
        tasks: [
          { command: cmd, payload: 1 },
          { command: cmd, priority: "high" },
          { command: cmd, payload: 3, colour: "red" },
          "not a task",
          { payload: 5 },
          { command: cmd, webhook: "ftp://files.test/x" },
          { command: cmd, payload: 7, priority: 9 }
        ]
      }
    })
    expect(res.status).toBe(200)
    const results = res.json.results as Array<Record<string, unknown>>
    expect(results).toHaveLength(7)
    expect(results[0]?.task).toMatchObject({ command: cmd, payload: 1, status: "PENDING" })
    expect(results[1]).toEqual({ error: "tasks[1].priority must be a number", field: "tasks[1].priority", rule: "type" })
    expect(results[2]).toEqual({ error: "unknown field tasks[2].colour", field: "tasks[2].colour", rule: "unknown" })
    expect(results[3]).toEqual({ error: "tasks[3] must be a JSON object", field: "tasks[3]", rule: "type" })
    expect(results[4]).toEqual({ error: "tasks[4].command is required", field: "tasks[4].command", rule: "required" })
    expect(results[5]).toMatchObject({ field: "tasks[5].webhook", rule: "url" })
    expect(results[6]?.task).toMatchObject({ command: cmd, payload: 7, priority: 9 })
    // Exactly the two valid items were created.
    await waitFor(async () => (await call("GET", `/v1/codeq/tasks?command=${cmd}`, { token: producer })).json.count === 2, { what: "two tasks in the read model" })
    expect(await dispatched(cmd)).toBe(2)
  })

  it("refuses a body that is not JSON with 415 naming the rule, and accepts application/json with a UTF-8 charset or no body", async () => {
    const cmd = command()
    const text = await call("POST", "/v1/codeq/tasks", { token: producer, body: JSON.stringify({ command: cmd }), headers: { "Content-Type": "text/plain" } })
    expect(text).toMatchObject({ status: 415, json: { rule: "content_type", field: "Content-Type" } })
    for (const contentType of ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"]) {
      const res = await call("POST", "/v1/codeq/tasks", { token: producer, body: JSON.stringify({ command: cmd }), headers: { "Content-Type": contentType } })
      expect(res.status, contentType).toBe(202)
    }
    // No body at all needs no Content-Type (every field of a heartbeat is optional).
    const other = command()
    const task = await create({ command: other })
    expect((await claim(other)).json.id).toBe(task.id)
    const bare = await call("POST", `/v1/codeq/tasks/${task.id}/heartbeat`, { token: worker })
    expect(bare.status).toBe(200)
  })
})
