/**
 * Child process: a codeq producer as a user writes one, from the outside only.
 *
 * - `via: "sdk"`: the public SDK (`CodeqClient.connect({ connection, naming })`,
 *   `producer(tenant).createMany(inputs)`) on a NATS connection this process opens and names, so
 *   the server's per-connection counters can be read. As fast as it can: `createMany` of `batch`
 *   tasks, one batch after another. At a fixed rate (`rate` > 0, the latency run): every 10 ms it
 *   creates what the schedule says is due, without waiting for earlier creates, so a slow answer
 *   does not slow the schedule.
 * - `via: "http"`: `POST /v1/codeq/tasks/batch` (at most 100 tasks a request) with `inflight`
 *   requests at once over a keep-alive undici pool.
 */
import { connect } from "nats"
import { childTracing, ErrorLog, loadCodeq, makePayload, postJson, runChild, type ChildControl, type LoadConfig, type ProducerResult } from "./ipc.js"

const TICK_MS = 10
/** The HTTP API's batch-create limit. */
const HTTP_MAX_BATCH = 100

interface Sink {
  readonly ids: Array<string>
  readonly errors: ErrorLog
  lastAt: number
}

type CreateBatch = (n: number, sink: Sink) => Promise<void>

/** Creates `config.tasks` tasks in batches, as fast as `inflight` calls at once allow. */
const createFast = async (config: LoadConfig, batch: number, inflight: number, create: CreateBatch, sink: Sink, control: ChildControl) => {
  let next = 0
  const lane = async () => {
    while (next < config.tasks && !control.isStopped()) {
      const n = Math.min(batch, config.tasks - next)
      next += n
      await create(n, sink)
      control.progress(sink.ids.length, sink.lastAt)
    }
  }
  await Promise.all(Array.from({ length: inflight }, lane))
}

/** Creates `config.tasks` tasks on a schedule of `config.rate` tasks/s from `startAt`. */
const createPaced = async (config: LoadConfig, startAt: number, create: CreateBatch, sink: Sink, control: ChildControl) => {
  const pending = new Set<Promise<void>>()
  let sent = 0
  while (sent < config.tasks && !control.isStopped()) {
    const due = Math.min(config.tasks, Math.floor(((Date.now() - startAt) / 1000) * config.rate))
    while (sent < due) {
      const n = Math.min(config.batch, due - sent)
      sent += n
      const call: Promise<void> = create(n, sink)
        .then(() => control.progress(sink.ids.length, sink.lastAt))
        .finally(() => pending.delete(call))
      pending.add(call)
    }
    await new Promise((resolve) => setTimeout(resolve, TICK_MS))
  }
  await Promise.all(pending)
}

/** The webhook field of every create, when the run has one. */
const webhookOf = (config: LoadConfig) => (config.webhook === "" ? {} : { webhook: config.webhook })

const sdkProducer = async (config: LoadConfig) => {
  const webhook = webhookOf(config)
  const nc = await connect({ servers: config.natsUrl, name: config.connectionName, noAsyncTraces: true })
  const { CodeqClient } = await loadCodeq()
  const client = await CodeqClient.connect({ connection: nc, naming: config.naming })
  const producer = client.producer(config.tenant)
  const payload = makePayload(config.payloadBytes)
  const create: CreateBatch = async (n, sink) => {
    try {
      const results = await producer.createMany(Array.from({ length: n }, () => ({ command: config.command, payload, ...webhook })))
      for (const item of results) {
        if (item.ok) sink.ids.push(item.task.id)
        else sink.errors.add(item.error)
      }
    } catch (error) {
      // The call failed as a whole (timeout, closed connection): none of its tasks is known.
      sink.errors.add(error, n)
    }
    sink.lastAt = Date.now()
  }
  const close = async () => {
    await client.close()
    await nc.drain()
  }
  return { create, close, batch: config.batch, inflight: 1 }
}

const httpProducer = async (config: LoadConfig) => {
  const webhook = webhookOf(config)
  const { Pool } = await import("undici")
  const pool = new Pool(config.httpUrl, { connections: config.inflight, pipelining: 1 })
  const payload = makePayload(config.payloadBytes)
  const create: CreateBatch = async (n, sink) => {
    try {
      const tasks = Array.from({ length: n }, () => ({ command: config.command, payload, ...webhook }))
      const answer = await postJson(pool, config.token, "/v1/codeq/tasks/batch", { tasks })
      const results = (answer.body as { results?: ReadonlyArray<{ task?: { id: string }; error?: string }> } | undefined)?.results ?? []
      for (const item of results) {
        if (item.task !== undefined) sink.ids.push(item.task.id)
        else sink.errors.add(new Error(item.error ?? "no task in the answer"))
      }
      if (results.length < n) sink.errors.add(new Error(`batch answered ${results.length} of ${n} items`), n - results.length)
    } catch (error) {
      sink.errors.add(error, n)
    }
    sink.lastAt = Date.now()
  }
  return { create, close: () => pool.close(), batch: Math.min(config.batch, HTTP_MAX_BATCH), inflight: config.inflight }
}

runChild(import.meta.url, async (config: LoadConfig) => {
  const tracing = await childTracing(config)
  const side = config.via === "sdk" ? await sdkProducer(config) : await httpProducer(config)
  return async (control) => {
    await control.go
    const sink: Sink = { ids: [], errors: new ErrorLog(), lastAt: 0 }
    const firstAt = Date.now()
    if (config.rate > 0) await createPaced(config, firstAt, side.create, sink, control)
    else await createFast(config, side.batch, side.inflight, side.create, sink, control)
    await side.close()
    await tracing.shutdown(5_000)
    const result: ProducerResult = { kind: "producer", ids: sink.ids, firstAt, lastAt: sink.lastAt, failed: sink.errors.count, errors: sink.errors.messages }
    return result
  }
})
