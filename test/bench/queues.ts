/**
 * Queue statistics over a tenant with a long history: N tasks created and all but the delayed ones
 * completed, the index's delete markers compacted by the broker, then `tasks.queues()` timed from
 * the open-task index, and again from every task-state document (the index's ready key removed, as
 * before the index existed), interleaved, in one run.
 * A private nats-server; the broker and the client in this process (what is timed is one read).
 */
import { startBroker } from "../../src/broker.js"
import { CodeqClient } from "../../src/sdk/client.js"
import { startNatsServer } from "../../src/testing/natsServer.js"
import { OPEN_INDEX_READY_KEY } from "../../src/eventlog/openTasks.js"
import { DEFAULT_STREAM_SETTINGS, openTaskBucket } from "../../streams/definitions.js"
import { DEFAULT_WEBHOOK_SETTINGS } from "../../src/webhooks/deliver.js"
import { percentiles } from "./e2e/latency.js"

const arg = (argv: ReadonlyArray<string>, name: string, fallback: number) => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? Number(argv[i + 1]) : fallback
}

const USAGE = `usage: npm run bench -- queues [--tasks N] [--delayed N] [--payload BYTES] [--reads N]
  --tasks N        tasks created (default 100000); all but the delayed ones are completed
  --delayed N      of them created with a runAt an hour ahead, left open (default 1000)
  --payload BYTES  payload size (default 200)
  --reads N        timed reads of each kind (default 20)`

export const runQueuesBench = async (argv: ReadonlyArray<string>): Promise<number> => {
  if (argv.includes("--help")) {
    console.log(USAGE)
    return 0
  }
  const tasks = arg(argv, "tasks", 100_000)
  const delayed = Math.min(tasks, arg(argv, "delayed", 1_000))
  const payloadBytes = arg(argv, "payload", 200)
  const reads = arg(argv, "reads", 20)
  if (![tasks, delayed, payloadBytes, reads].every((n) => Number.isInteger(n) && n >= 0) || reads < 1) {
    console.error(USAGE)
    return 1
  }
  const server = await startNatsServer({ ownServer: true })
  const naming = { streamPrefix: "BQ", subjectRoot: "bq" }
  const broker = await startBroker({ natsUrl: server.url, naming, streams: DEFAULT_STREAM_SETTINGS, webhooks: DEFAULT_WEBHOOK_SETTINGS, tracing: {} })
  const client = await CodeqClient.connect({ servers: server.url, naming })
  try {
    const payload = "x".repeat(payloadBytes)
    const runAt = new Date(Date.now() + 3_600_000).toISOString()
    const worker = client.worker("bench")
    let done = 0
    const running = worker.run(["job"], () => {
      done++
      return null
    }, { concurrency: 64 })
    const started = performance.now()
    for (let i = 0; i < tasks; i += 1_000) {
      const batch = Array.from({ length: Math.min(1_000, tasks - i) }, (_, j) => ({ command: "job", payload, ...(i + j < delayed ? { runAt } : {}) }))
      await client.producer("bench").createMany(batch)
    }
    for (;;) {
      const q = await client.tasks.queue("bench", "job")
      if (done >= tasks - delayed && q.ready === 0 && q.inProgress === 0 && q.delayed === delayed) break
      await new Promise((resolve) => setTimeout(resolve, 500))
    }
    await worker.stop()
    await running
    console.error(`filled: ${tasks} tasks (${delayed} delayed, open) in ${((performance.now() - started) / 1000).toFixed(1)} s`)

    const index = await client.nc.jetstream().views.kv(openTaskBucket(naming))
    const timed = async (): Promise<number> => {
      const t = performance.now()
      const overview = await client.tasks.queues("bench")
      if (overview.totals.delayed !== delayed) throw new Error(`counted ${overview.totals.delayed} delayed tasks, not ${delayed}`)
      return performance.now() - t
    }
    // The delete markers the backlog's tasks left are compacted by the broker (a pass once 10,000
    // entries were removed, then purges key by key): the reads are timed once that is done.
    const jsm = await client.nc.jetstreamManager()
    const indexMessages = async () => (await jsm.streams.info(`KV_${openTaskBucket(naming)}`)).state.messages
    const markers = await indexMessages()
    const compacting = performance.now()
    while ((await indexMessages()) > delayed + 2 && performance.now() - compacting < 300_000) await new Promise((resolve) => setTimeout(resolve, 500))
    console.error(`index: ${markers} messages (entries and delete markers) after the fill, ${await indexMessages()} after ${((performance.now() - compacting) / 1000).toFixed(1)} s of compaction`)
    const listed = async (): Promise<number> => {
      const t = performance.now()
      const tasks = await client.tasks.list("bench", { status: "PENDING", limit: 100 })
      if (tasks.length !== Math.min(100, delayed)) throw new Error(`listed ${tasks.length} waiting tasks, not ${Math.min(100, delayed)}`)
      return performance.now() - t
    }
    const fromIndex: Array<number> = []
    const fromDocuments: Array<number> = []
    const listFromIndex: Array<number> = []
    const listFromDocuments: Array<number> = []
    for (let r = 0; r < reads; r++) {
      fromIndex.push(await timed())
      listFromIndex.push(await listed())
      await index.delete(OPEN_INDEX_READY_KEY)
      fromDocuments.push(await timed())
      listFromDocuments.push(await listed())
      await index.put(OPEN_INDEX_READY_KEY, new TextEncoder().encode(new Date().toISOString()))
    }
    const show = (xs: ReadonlyArray<number>) => {
      const p = percentiles(xs)
      return `median ${p?.p50.toFixed(1)} ms, max ${p?.max.toFixed(1)} ms`
    }
    console.log(`queues bench: ${tasks} tasks of one tenant (${payloadBytes}-byte payloads), ${delayed} open, ${reads} reads of each kind interleaved, nats-server at ${server.url}`)
    console.log(`from the open-task index:        ${show(fromIndex)}`)
    console.log(`from every task-state document: ${show(fromDocuments)}`)
    console.log(`ratio (documents / index, medians): ${((percentiles(fromDocuments)?.p50 ?? 0) / (percentiles(fromIndex)?.p50 ?? 1)).toFixed(1)}x`)
    console.log(`list the newest 100 PENDING, from the index: ${show(listFromIndex)}`)
    console.log(`list the newest 100 PENDING, from every document: ${show(listFromDocuments)}`)
    console.log(`ratio (documents / index, medians): ${((percentiles(listFromDocuments)?.p50 ?? 0) / (percentiles(listFromIndex)?.p50 ?? 1)).toFixed(1)}x`)
    return 0
  } finally {
    await client.close()
    await broker.stop()
    await server.stop()
  }
}
