/**
 * Child process: a codeq worker with a no-op handler, from the outside only. It records every
 * task id it completes, repeats included, so the orchestrator can check that each task completed
 * exactly once; it runs until the orchestrator says stop.
 *
 * - `via: "sdk"`: `client.worker(tenant, { workerId }).run([command], handler, { concurrency })`
 *   on a NATS connection this process opens and names; `worker.stop()` on stop, which lets the
 *   running handlers finish and settle. A completion is counted when the handler returns (the
 *   SDK settles right after; the orchestrator takes the end of the run from the log itself).
 * - `via: "http"`: `concurrency` claim loops over a keep-alive undici pool, each
 *   `POST /v1/codeq/tasks/claim/batch` (count ≤ 10, waitSeconds 1) then
 *   `POST /v1/codeq/tasks/batch/results` for what it got; a completion is counted when the result
 *   item comes back stored.
 */
import { connect } from "nats"
import { childTracing, ErrorLog, loadCodeq, postJson, runChild, type ChildControl, type LoadConfig, type WorkerResult } from "./ipc.js"

/** The HTTP API's batch-claim limit. */
const HTTP_MAX_CLAIM = 10
const HTTP_WAIT_SECONDS = 1

interface Tally {
  readonly completed: Array<string>
  readonly errors: ErrorLog
  lastAt: number
}

const sdkWorker = async (config: LoadConfig) => {
  const nc = await connect({ servers: config.natsUrl, name: config.connectionName, noAsyncTraces: true })
  const { CodeqClient } = await loadCodeq()
  const client = await CodeqClient.connect({ connection: nc, naming: config.naming })
  return async (tally: Tally, control: ChildControl) => {
    const worker = client.worker(config.tenant, { workerId: config.connectionName, onError: (error) => tally.errors.add(error) })
    const running = worker.run(
      [config.command],
      (task) => {
        tally.completed.push(task.id)
        tally.lastAt = Date.now()
        control.progress(tally.completed.length, tally.lastAt)
        return null
      },
      { concurrency: config.concurrency }
    )
    await control.stopped
    await worker.stop()
    await running
    await client.close()
    await nc.drain()
  }
}

interface ClaimedTask {
  readonly id: string
}

const httpWorker = async (config: LoadConfig) => {
  const { Pool } = await import("undici")
  const pool = new Pool(config.httpUrl, { connections: config.concurrency, pipelining: 1 })
  const claimLoop = async (tally: Tally, control: ChildControl) => {
    while (!control.isStopped()) {
      try {
        const claim = await postJson(pool, config.token, "/v1/codeq/tasks/claim/batch", {
          commands: [config.command],
          count: HTTP_MAX_CLAIM,
          waitSeconds: HTTP_WAIT_SECONDS
        })
        if (claim.status === 204) continue
        const tasks = (claim.body as { tasks?: ReadonlyArray<ClaimedTask> } | undefined)?.tasks ?? []
        if (tasks.length === 0) continue
        const settled = await postJson(pool, config.token, "/v1/codeq/tasks/batch/results", {
          results: tasks.map((task) => ({ taskId: task.id, status: "COMPLETED", result: null }))
        })
        const now = Date.now()
        for (const item of (settled.body as { results?: ReadonlyArray<{ taskId: string; result?: unknown; error?: string }> } | undefined)?.results ?? []) {
          if (item.result !== undefined) tally.completed.push(item.taskId)
          else tally.errors.add(new Error(`result of ${item.taskId} refused: ${item.error ?? "?"}`))
        }
        tally.lastAt = now
        control.progress(tally.completed.length, tally.lastAt)
      } catch (error) {
        tally.errors.add(error)
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
  }
  return async (tally: Tally, control: ChildControl) => {
    await Promise.all(Array.from({ length: config.concurrency }, () => claimLoop(tally, control)))
    await pool.close()
  }
}

runChild(import.meta.url, async (config: LoadConfig) => {
  const tracing = await childTracing(config)
  const work = config.via === "sdk" ? await sdkWorker(config) : await httpWorker(config)
  return async (control) => {
    await control.go
    const tally: Tally = { completed: [], errors: new ErrorLog(), lastAt: 0 }
    await work(tally, control)
    await tracing.shutdown(5_000)
    const result: WorkerResult = { kind: "worker", completed: tally.completed, lastAt: tally.lastAt, failed: tally.errors.count, errors: tally.errors.messages }
    return result
  }
})
