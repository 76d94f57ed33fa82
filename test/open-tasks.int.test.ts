/**
 * The open-task index (src/eventlog/openTasks.ts) on a real nats-server: it holds exactly the tasks
 * whose task-state documents are open, with the counts a scan of every document gives, through
 * claims, ends, a broker restart and a rebuild; a deployment without it is filled from the
 * documents; compaction removes delete markers and never brings back a key written meanwhile.
 */
import { describe, expect, it } from "vitest"
import type { KV } from "nats"
import { startBroker } from "../src/broker.js"
import { CodeqClient } from "../src/sdk/client.js"
import { fail } from "../src/sdk/worker.js"
import { rebuildProjectionState } from "../projections/rebuild.js"
import type { TaskState } from "../src/domain/events.js"
import { openTaskEntry } from "../src/domain/openTask.js"
import { deleteBucket, liveEntries, openBucket, type Bucket } from "../src/eventlog/kv.js"
import { compactOpenTasks, OPEN_INDEX_READY_KEY, readOpenTasks } from "../src/eventlog/openTasks.js"
import { QueueTally } from "../src/tasks/queues.js"
import { openTaskBucket, taskStateBucket, type Naming } from "../streams/definitions.js"
import type { RunningBroker } from "../src/broker.js"
import { OpenTaskUpkeep } from "../projections/openTasks.js"
import { brokerConfig, freshNaming, projectionsCaughtUp, quietLogger, streamMessages, useNatsServer, waitFor } from "./support/harness.js"

const nats = useNatsServer()

/**
 * A fresh open-task index of `total` open entries of tenant acme, of which all but the first
 * `kept` were then removed: that many delete markers to compact.
 */
const markedIndex = async (nc: Awaited<ReturnType<typeof nats.connect>>, naming: Naming, total: number, kept: number): Promise<{ readonly name: string; readonly index: Bucket }> => {
  const name = openTaskBucket(naming)
  const index = await openBucket(nc, name)
  const js = nc.jetstream()
  const entry = new TextEncoder().encode('{"command":"c","priority":0,"status":"PENDING","createdSeq":1}')
  const keys = Array.from({ length: total }, (_, i) => `acme.t${i}`)
  for (let i = 0; i < keys.length; i += 1_000) await Promise.all(keys.slice(i, i + 1_000).map((key) => js.publish(`$KV.${name}.${key}`, entry)))
  const removed = keys.slice(kept)
  for (let i = 0; i < removed.length; i += 1_000) await Promise.all(removed.slice(i, i + 1_000).map((key) => index.delete(key)))
  return { name, index }
}
const decoder = new TextDecoder()

/** The open task documents of the bucket, as index entries by key. */
const openDocuments = async (client: CodeqClient): Promise<Map<string, string>> => {
  const kv = await client.nc.jetstream().views.kv(taskStateBucket(client.naming))
  const open = new Map<string, string>()
  for (const [key, entry] of await liveEntries(kv, ">")) {
    if (key.startsWith("_")) continue
    const summary = openTaskEntry(JSON.parse(decoder.decode(entry.value)) as TaskState)
    if (summary !== undefined) open.set(key, summary)
  }
  return open
}

/** The index's tenant entries by key (its ready key and the writer's barrier left out). */
const indexEntries = async (client: CodeqClient): Promise<Map<string, string>> => {
  const kv = await client.nc.jetstream().views.kv(openTaskBucket(client.naming))
  const entries = new Map<string, string>()
  for (const [key, entry] of await liveEntries(kv, ">")) if (!key.startsWith("_")) entries.set(key, decoder.decode(entry.value))
  return entries
}

/** The counts a scan of every task-state document gives (what queue statistics gave before the index). */
const scannedCounts = async (client: CodeqClient, tenant: string) => {
  const kv: KV = await client.nc.jetstream().views.kv(taskStateBucket(client.naming))
  const tally = new QueueTally(new Date())
  for (const [key, entry] of await liveEntries(kv, `${tenant}.*`)) if (!key.startsWith("_")) tally.add(JSON.parse(decoder.decode(entry.value)) as TaskState)
  return tally.overview()
}

/** Every document written (task-state caught up: nothing dirty), then the index equals the open documents. */
const expectIndexMatches = async (broker: RunningBroker, client: CodeqClient, open: number) => {
  await waitFor(() => projectionsCaughtUp(broker, client.nc, client.naming, ["task-state"]), { timeoutMs: 60_000, what: "task-state to catch up" })
  const documents = await openDocuments(client)
  expect(documents.size).toBe(open)
  expect(await indexEntries(client)).toEqual(documents)
  expect(await client.tasks.queues("acme")).toEqual(await scannedCounts(client, "acme"))
}

/** A listing from the index, then with the index not ready (from every document): they must be equal. */
const listedBothWays = async (client: CodeqClient, filter: Parameters<CodeqClient["tasks"]["list"]>[1]) => {
  const fromIndex = await client.tasks.list("acme", filter)
  const kv = await client.nc.jetstream().views.kv(openTaskBucket(client.naming))
  await kv.delete(OPEN_INDEX_READY_KEY)
  const fromDocuments = await client.tasks.list("acme", filter)
  await kv.put(OPEN_INDEX_READY_KEY, new TextEncoder().encode("again"))
  expect(fromIndex).toEqual(fromDocuments)
  return fromIndex
}

const ready = async (client: CodeqClient): Promise<boolean> => {
  const kv = await client.nc.jetstream().views.kv(openTaskBucket(client.naming))
  return (await kv.get(OPEN_INDEX_READY_KEY))?.operation === "PUT"
}

/** Waits until every one of `count` open tasks of `command` is counted (their documents are written after a few seconds). */
const counted = (client: CodeqClient, command: string, count: number) =>
  waitFor(
    async () => {
      const q = await client.tasks.queue("acme", command)
      return q.ready + q.delayed + q.inProgress === count || undefined
    },
    { timeoutMs: 30_000, what: `${count} open ${command} tasks counted` }
  )

describe("open-task index", () => {
  it("holds exactly the open tasks, counted as a scan of every document counts them, through claims, ends, a restart and a rebuild", async () => {
    const naming = freshNaming()
    let broker = await startBroker(brokerConfig(nats.url(), naming))
    const client = await CodeqClient.connect({ servers: nats.url(), naming })
    try {
      const runAt = new Date(Date.now() + 3_600_000).toISOString()
      const producer = client.producer("acme")
      await producer.createMany(Array.from({ length: 300 }, (_, i) => ({ command: "work", priority: i % 10, payload: { i }, ...(i % 3 === 0 ? { runAt } : {}) })))
      await producer.createMany(Array.from({ length: 60 }, (_, i) => ({ command: "doomed", payload: { i }, maxAttempts: 1 })))
      // Written open after a few seconds, every one of them is in the index.
      await counted(client, "work", 300)
      await counted(client, "doomed", 60)
      expect(await ready(client)).toBe(true)
      await expectIndexMatches(broker, client, 360)

      // Held by a worker (in progress: as many as its feed takes at concurrency 20), then every
      // ready one completed or failed: the 100 delayed ones stay.
      let release: () => void = () => undefined
      const held = new Promise<void>((resolve) => (release = resolve))
      let started = 0
      const worker = client.worker("acme", { workerId: "holder" })
      const running = worker.run(["work", "doomed"], async (task) => {
        started++
        await held
        return task.command === "doomed" ? fail("on purpose") : { ok: true }
      }, { concurrency: 20 })
      await waitFor(async () => started > 0 && (await client.tasks.queue("acme", "work")).inProgress + (await client.tasks.queue("acme", "doomed")).inProgress === started, {
        timeoutMs: 30_000,
        what: "the held tasks counted in progress"
      })
      expect((await client.tasks.queues("acme")).totals.inProgress).toBe(started)
      await expectIndexMatches(broker, client, 360)
      // Listings of waiting or leased tasks are chosen from the index: the same as from every document.
      const inProgress = await listedBothWays(client, { status: "IN_PROGRESS" })
      expect(inProgress.map((t) => t.status)).toEqual(Array.from({ length: started }, () => "IN_PROGRESS"))
      const newestPending = await listedBothWays(client, { status: "PENDING", command: "work", limit: 7 })
      expect(newestPending).toHaveLength(7)
      // Chosen from the index indeed: a task whose entry is not there is not listed from it.
      const openIndex = await client.nc.jetstream().views.kv(openTaskBucket(naming))
      const newestKey = `acme.${newestPending[0]?.id}`
      const entry = await openIndex.get(newestKey)
      await openIndex.delete(newestKey)
      expect((await client.tasks.list("acme", { status: "PENDING", command: "work", limit: 7 })).map((t) => t.id)).not.toContain(newestPending[0]?.id)
      await openIndex.put(newestKey, entry?.value ?? new Uint8Array())

      // A restart between: the next term goes on from the documents the last one wrote.
      await broker.stop()
      broker = await startBroker(brokerConfig(nats.url(), naming))
      release()
      await waitFor(async () => (await client.tasks.queue("acme", "work")).ready === 0 && (await client.tasks.queue("acme", "doomed")).ready === 0 || undefined, {
        timeoutMs: 60_000,
        what: "every ready task run"
      })
      await worker.stop()
      await running
      await expectIndexMatches(broker, client, 100)
      const before = await indexEntries(client)
      expect([...before.values()].every((entry) => JSON.parse(entry).status === "PENDING" && JSON.parse(entry).runAt === runAt)).toBe(true)

      // Rebuilt from the log: the same entries, and ready.
      await broker.stop()
      await rebuildProjectionState(client.nc, client.log, "task-state")
      expect(await indexEntries(client)).toEqual(before)
      expect(await ready(client)).toBe(true)
    } finally {
      await broker.stop()
      await client.close()
    }
  }, 180_000)

  it("is filled from the task-state documents when a deployment had none, and counts fall back to the documents until then", async () => {
    const naming = freshNaming()
    let broker = await startBroker(brokerConfig(nats.url(), naming))
    const client = await CodeqClient.connect({ servers: nats.url(), naming })
    try {
      await client.producer("acme").createMany(Array.from({ length: 50 }, (_, i) => ({ command: "later", priority: i % 3 })))
      await counted(client, "later", 50)
      await broker.stop()
      // As a deployment from before the index: the bucket is not there.
      await deleteBucket(client.nc, openTaskBucket(naming))
      expect((await client.tasks.queue("acme", "later")).ready).toBe(50)
      broker = await startBroker(brokerConfig(nats.url(), naming))
      await waitFor(() => ready(client), { timeoutMs: 30_000, what: "the index filled and ready" })
      await expectIndexMatches(broker, client, 50)
    } finally {
      await broker.stop()
      await client.close()
    }
  }, 60_000)

  it("counts every open task exactly while a compaction removes 1,800 markers beside the scan", async () => {
    const naming: Naming = freshNaming()
    const nc = await nats.connect()
    try {
      const { name, index } = await markedIndex(nc, naming, 2_000, 200)
      let compacting = true
      const compaction = compactOpenTasks(nc, index, name).finally(() => (compacting = false))
      const counts: Array<number> = []
      while (compacting || counts.length === 0) counts.push((await readOpenTasks(index, "acme")).size)
      expect((await compaction).purged).toBe(1_800)
      expect(counts.length).toBeGreaterThan(1)
      expect(new Set(counts)).toEqual(new Set([200]))
    } finally {
      await nc.close()
    }
  }, 60_000)

  it("compacts its delete markers key by key, keeping live entries as they are and a key written during the pass", async () => {
    const naming: Naming = freshNaming()
    const nc = await nats.connect()
    try {
      const name = openTaskBucket(naming)
      const index = await openBucket(nc, name)
      const value = (s: string) => new TextEncoder().encode(s)
      for (const key of ["acme.a", "acme.b", "acme.c", "acme.d", "acme.e"]) await index.put(key, value(`{"k":"${key}"}`))
      for (const key of ["acme.c", "acme.d", "acme.e"]) await index.delete(key)
      const revisions = async () => new Map([...(await liveEntries(index, ">"))].map(([key, entry]) => [key, entry.revision]))
      const before = await revisions()
      expect([...before.keys()].sort()).toEqual(["acme.a", "acme.b"])
      expect(await streamMessages(nc, `KV_${name}`)).toBe(5)
      // The projection writes acme.c again after the pass found its marker, before the purge.
      const racing: Pick<Bucket, "watch"> = {
        watch: async (options) => {
          const watch = await index.watch(options)
          return {
            stop: () => watch.stop(),
            [Symbol.asyncIterator]: async function* () {
              yield* watch
              await index.put("acme.c", value('{"k":"again"}'))
            }
          }
        }
      }
      const result = await compactOpenTasks(nc, racing, name)
      expect(result).toEqual({ markers: 3, purged: 2 })
      // The live entries were not touched; acme.c's new entry stayed; d and e are gone.
      const after = await revisions()
      expect(after.get("acme.a")).toBe(before.get("acme.a"))
      expect(after.get("acme.b")).toBe(before.get("acme.b"))
      expect([...after.keys()].sort()).toEqual(["acme.a", "acme.b", "acme.c"])
      expect(decoder.decode((await index.get("acme.c"))?.value)).toBe('{"k":"again"}')
      expect(await streamMessages(nc, `KV_${name}`)).toBe(3)

      // The upkeep passes on the broker that leads the projections only, once enough was removed.
      for (const key of ["acme.h", "acme.i", "acme.j", "acme.k"]) {
        await index.put(key, value("{}"))
        await index.delete(key)
      }
      const stored = () => streamMessages(nc, `KV_${name}`)
      expect(await stored()).toBe(7)
      let leading = false
      let removed = 4
      const upkeep = new OpenTaskUpkeep(nc, { name, bucket: index }, { leading: () => leading, log: quietLogger, removed: () => removed, compactFrom: 5 })
      try {
        await upkeep.pass()
        expect(await stored()).toBe(7)
        // Leading, but fewer entries removed than a pass waits for.
        leading = true
        await upkeep.pass()
        expect(await stored()).toBe(7)
        removed = 5
        await upkeep.pass()
        expect(await stored()).toBe(3)
        expect([...(await liveEntries(index, ">")).keys()].sort()).toEqual(["acme.a", "acme.b", "acme.c"])
      } finally {
        await upkeep.stop()
      }
    } finally {
      await nc.close()
    }
  })

  it("ends a compaction pass part way when the upkeep stops, and the next pass finishes it", async () => {
    const naming: Naming = freshNaming()
    const nc = await nats.connect()
    try {
      const { name, index } = await markedIndex(nc, naming, 3_000, 0)
      const stored = () => streamMessages(nc, `KV_${name}`)
      // The bucket keeps one message per key: the markers are all it holds.
      expect(await stored()).toBe(3_000)
      const upkeep = new OpenTaskUpkeep(nc, { name, bucket: index }, { leading: () => true, log: quietLogger, removed: () => 3_000, compactFrom: 1 })
      const pass = upkeep.pass()
      await waitFor(async () => (await stored()) < 3_000 || undefined, { what: "the pass to purge its first markers" })
      await upkeep.stop()
      await pass
      const left = await stored()
      // The stop did not wait for the other purges of the pass (it used to wait for them all).
      expect(left).toBeGreaterThan(0)
      expect(await stored()).toBe(left)
      expect(await compactOpenTasks(nc, index, name)).toEqual({ markers: left, purged: left })
      expect(await stored()).toBe(0)
    } finally {
      await nc.close()
    }
  })
})
