/**
 * The projections as a fold plus sinks, without a server: events the repository appends to the
 * in-memory log are folded by TaskDocs (the task-state projection) into an in-memory bucket, and
 * the dead-letters sink keeps its index in another — the same code the broker runs over JetStream.
 */
import { randomUUID } from "node:crypto"
import { describe, expect, it } from "vitest"
import type { TaskCommand } from "../src/domain/decide.js"
import { fold, type StoredEvent, type TaskState } from "../src/domain/events.js"
import { InMemoryBucket, InMemoryEventLog } from "../src/eventlog/memory.js"
import { TaskRepository } from "../src/tasks/repository.js"
import { Telemetry } from "../src/tracing/spans.js"
import { TaskDocs, type Change } from "../projections/docs.js"
import { deadLetters } from "../projections/deadLetters.js"
import { oneAfterAnother } from "../projections/run.js"
import { deadLetterKey, taskStateKey } from "../streams/definitions.js"

const TENANT = "acme"

/** Lets promise reactions run until `done` holds (a few turns of the microtask queue at most). */
const waitUntil = async (done: () => boolean) => {
  for (let turn = 0; turn < 100 && !done(); turn++) await Promise.resolve()
  expect(done()).toBe(true)
}
const naming = { streamPrefix: "PROJ", subjectRoot: "proj" }
const decoder = new TextDecoder()
const T0 = new Date("2026-01-05T10:00:00.000Z")
const at = (seconds: number) => () => new Date(T0.getTime() + seconds * 1000)

const create = (taskId: string, maxAttempts = 3) => (now: Date): TaskCommand => ({ type: "CreateTask", taskId, tenant: TENANT, now, command: "resize", payload: { n: 1 }, priority: 0, maxAttempts })
const claim = (taskId: string, workerId: string) => (now: Date): TaskCommand => ({ type: "ClaimTask", taskId, tenant: TENANT, now, workerId, leaseSeconds: 30, leaseHandle: `h-${workerId}` })
const complete = (taskId: string, workerId: string) => (now: Date): TaskCommand => ({ type: "CompleteTask", taskId, tenant: TENANT, now, workerId, result: { ok: true } })
const nack = (taskId: string, workerId: string) => (now: Date): TaskCommand => ({ type: "NackTask", taskId, tenant: TENANT, now, workerId, delaySeconds: 0, reason: "poison" })
const purge = (taskId: string) => (now: Date): TaskCommand => ({ type: "PurgeTask", taskId, tenant: TENANT, now, reason: "operator" })
const requeue = (taskId: string) => (now: Date): TaskCommand => ({ type: "RequeueTask", taskId, tenant: TENANT, now, reason: "operator" })

/** Folds `events` the way the runtime does: prepare the batch, then apply each in order through the sinks. */
const project = async (docs: TaskDocs, sinks: ReadonlyArray<{ apply(change: Change): Promise<unknown> | undefined }>, events: ReadonlyArray<StoredEvent>) => {
  await docs.prepare(events)
  const changes: Array<Change> = []
  for (const stored of events) {
    const change = docs.apply(stored)
    changes.push(change)
    for (const sink of sinks) await sink.apply(change)
  }
  return changes
}

const documentOf = (bucket: InMemoryBucket, taskId: string): TaskState | undefined => {
  const value = bucket.values().get(taskStateKey(TENANT, taskId))
  return value === undefined ? undefined : (JSON.parse(decoder.decode(value)) as TaskState)
}

/** A bucket whose barrier fails while `fail(true)` holds: its puts are not known to be stored. */
const failingBarrier = () => {
  const bucket = new InMemoryBucket()
  let failing = false
  const store = {
    get: (key: string) => bucket.get(key),
    putUnacked: (key: string, value: Uint8Array) => bucket.putUnacked(key, value),
    barrier: async () => {
      if (failing) throw new Error("no ack")
    }
  }
  return { bucket, store, fail: (on: boolean) => (failing = on) }
}

describe("projections over the in-memory log and buckets", () => {
  it("folds every task to the state its history folds to, writes it, and indexes dead letters until requeued", async () => {
    const log = new InMemoryEventLog(naming)
    const repo = new TaskRepository(log, new Telemetry())
    const [done, dead, waiting] = [randomUUID(), randomUUID(), randomUUID()]
    await repo.apply(TENANT, done, create(done), { now: at(0) })
    await repo.apply(TENANT, dead, create(dead, 1), { now: at(0) })
    await repo.apply(TENANT, waiting, create(waiting), { now: at(0) })
    await repo.apply(TENANT, done, claim(done, "w1"), { now: at(1) })
    await repo.apply(TENANT, done, complete(done, "w1"), { now: at(2) })
    await repo.apply(TENANT, dead, claim(dead, "w2"), { now: at(1) })
    await repo.apply(TENANT, dead, nack(dead, "w2"), { now: at(2) })

    const states = new InMemoryBucket()
    const index = new InMemoryBucket()
    const docs = new TaskDocs(states, log)
    const changes = await project(docs, [deadLetters(index)], log.events())
    expect(changes.map((c) => c.stored.event.type)).toEqual(log.events().map((e) => e.event.type))
    expect(changes.every((c) => !c.replayed)).toBe(true)
    await docs.flush(true)
    for (const id of [done, dead, waiting]) {
      const folded = fold((await log.readTask(TENANT, id)).events)
      expect(docs.stateOf(TENANT, id)).toEqual(folded)
      expect(documentOf(states, id)).toEqual(folded)
    }
    expect(documentOf(states, done)?.status).toBe("COMPLETED")
    expect(documentOf(states, dead)?.status).toBe("DEAD_LETTERED")
    expect([...index.values().keys()]).toEqual([deadLetterKey(TENANT, "resize", dead)])
    expect(JSON.parse(decoder.decode(index.values().get(deadLetterKey(TENANT, "resize", dead))))).toMatchObject({ taskId: dead, reason: "max_attempts", attempts: 1 })

    // A requeue removes the entry; the fold goes on from where it was.
    const position = log.events().at(-1)?.seq ?? 0
    await repo.apply(TENANT, dead, requeue(dead), { now: at(3) })
    await project(docs, [deadLetters(index)], log.events(position + 1))
    expect(index.values().size).toBe(0)
    expect(docs.stateOf(TENANT, dead)?.status).toBe("PENDING")
  })

  /** A log of one task created, claimed and completed. */
  const completedTaskLog = async () => {
    const log = new InMemoryEventLog(naming)
    const repo = new TaskRepository(log, new Telemetry())
    const id = randomUUID()
    await repo.apply(TENANT, id, create(id), { now: at(0) })
    await repo.apply(TENANT, id, claim(id, "w1"), { now: at(1) })
    await repo.apply(TENANT, id, complete(id, "w1"), { now: at(2) })
    return { log, id }
  }

  it("a second fold over the same log (a restart) changes nothing and writes no task back to an older state", async () => {
    const { log, id } = await completedTaskLog()
    const states = new InMemoryBucket()
    const first = new TaskDocs(states, log)
    await project(first, [], log.events())
    await first.flush(true)
    const written = documentOf(states, id)
    expect(written?.status).toBe("COMPLETED")

    // A new broker replays the log from the start: everything up to the horizon may be in the bucket.
    const again = new TaskDocs(states, log, { replayHorizon: log.events().at(-1)?.seq ?? 0 })
    const changes = await project(again, [], log.events())
    expect(changes.every((c) => c.replayed)).toBe(true)
    await again.flush(true)
    expect(again.written).toBe(0)
    expect(documentOf(states, id)).toEqual(written)
  })

  it("writes ended tasks at once and running ones after a while, keeps unwritten ones dirty through a failed barrier, and reports what is durable", async () => {
    const log = new InMemoryEventLog(naming)
    const repo = new TaskRepository(log, new Telemetry())
    const [running, ended] = [randomUUID(), randomUUID()]
    await repo.apply(TENANT, running, create(running), { now: at(0) })
    await repo.apply(TENANT, ended, create(ended), { now: at(0) })
    await repo.apply(TENANT, ended, claim(ended, "w1"), { now: at(1) })
    await repo.apply(TENANT, ended, complete(ended, "w1"), { now: at(2) })
    const last = log.events().at(-1)?.seq ?? 0
    const { bucket, store, fail } = failingBarrier()
    fail(true)
    const docs = new TaskDocs(store, log, { writeAfterMs: 60_000 })
    await project(docs, [], log.events())
    // Nothing written yet: durable only before the running task's create.
    expect(docs.durableThrough(last)).toBe(0)
    await expect(docs.flush(false)).rejects.toThrow("no ack")
    expect(docs.written).toBe(0)
    expect(docs.durableThrough(last)).toBe(0)
    fail(false)
    // Not all: only the ended task is due; the running one waits for writeAfterMs.
    await docs.flush(false)
    expect(docs.written).toBe(1)
    expect(documentOf(bucket, ended)?.status).toBe("COMPLETED")
    expect(docs.durableThrough(last)).toBe(0)
    await docs.flush(true)
    expect(docs.written).toBe(2)
    expect(documentOf(bucket, running)?.status).toBe("PENDING")
    expect(docs.durableThrough(last)).toBe(last)
  })


  it("writes waiting tasks only beyond maxUnwritten, oldest first, when none is old enough; a flush of everything writes the rest", async () => {
    const log = new InMemoryEventLog(naming)
    const repo = new TaskRepository(log, new Telemetry())
    const ids = [randomUUID(), randomUUID(), randomUUID(), randomUUID(), randomUUID()]
    for (const [i, id] of ids.entries()) await repo.apply(TENANT, id, create(id), { now: at(i) })
    const bucket = new InMemoryBucket()
    const docs = new TaskDocs(bucket, log, { writeAfterMs: 60_000, maxUnwritten: 2 })
    await project(docs, [], log.events())
    await docs.flush(false)
    // Five wait, none for a minute: the three oldest go, two stay unwritten.
    expect(docs.written).toBe(3)
    expect(ids.map((id) => documentOf(bucket, id)?.status)).toEqual(["PENDING", "PENDING", "PENDING", undefined, undefined])
    await docs.flush(false)
    expect(docs.written).toBe(3)
    await docs.flush(true)
    expect(ids.every((id) => documentOf(bucket, id)?.status === "PENDING")).toBe(true)
  })

  it("writes waiting tasks beyond maxUnwrittenBytes, reckoned from their events' bodies, oldest first", async () => {
    const log = new InMemoryEventLog(naming)
    const repo = new TaskRepository(log, new Telemetry())
    const ids = [randomUUID(), randomUUID(), randomUUID()]
    const big = (taskId: string) => (now: Date): TaskCommand => ({ ...create(taskId)(now), payload: { s: "x".repeat(1_000) } } as TaskCommand)
    for (const [i, id] of ids.entries()) await repo.apply(TENANT, id, big(id), { now: at(i) })
    expect(log.events().every((e) => (e.bodyBytes ?? 0) > 1_000)).toBe(true)
    const bucket = new InMemoryBucket()
    const docs = new TaskDocs(bucket, log, { writeAfterMs: 60_000, maxUnwritten: 100, maxUnwrittenBytes: 2_000 })
    await project(docs, [], log.events())
    await docs.flush(false)
    // Three of over 1 KB each: two go before what is left is within 2,000 bytes.
    expect(ids.map((id) => documentOf(bucket, id)?.status)).toEqual(["PENDING", "PENDING", undefined])
    await docs.flush(false)
    expect(docs.written).toBe(2)
  })
  it("does not report documents durable while the barrier after their puts has not answered", async () => {
    const { log } = await completedTaskLog()
    const last = log.events().at(-1)?.seq ?? 0
    const bucket = new InMemoryBucket()
    let answer: () => void = () => undefined
    const store = {
      get: (key: string) => bucket.get(key),
      putUnacked: (key: string, value: Uint8Array) => bucket.putUnacked(key, value),
      barrier: () => new Promise<void>((resolve) => (answer = resolve))
    }
    const docs = new TaskDocs(store, log)
    await project(docs, [], log.events())
    const flushing = docs.flush(false)
    // Sent, not yet known to be stored: a position read now must not count it.
    expect(docs.durableThrough(last)).toBe(0)
    answer()
    await flushing
    expect(docs.durableThrough(last)).toBe(last)
  })

  it("reports durable only below the lowest unwritten sequence, in whatever order documents became dirty (a refold, a failed write)", async () => {
    const log = new InMemoryEventLog(naming)
    const repo = new TaskRepository(log, new Telemetry())
    const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()]
    const { bucket, store, fail } = failingBarrier()
    const docs = new TaskDocs(store, log, { writeAfterMs: 60_000 })
    const seqOf = () => log.events().at(-1)?.seq ?? 0
    await repo.apply(TENANT, a, create(a), { now: at(0) })
    const aCreated = seqOf()
    await repo.apply(TENANT, b, create(b), { now: at(0) })
    await project(docs, [], log.events())
    await docs.flush(true)
    const written = seqOf()
    expect(docs.durableThrough(written)).toBe(written)
    // a's claim is never handed to the fold (as if quarantined); b's is.
    await repo.apply(TENANT, a, claim(a, "w1"), { now: at(1) })
    await repo.apply(TENANT, b, claim(b, "w1"), { now: at(1) })
    await project(docs, [], log.events(seqOf()))
    // a's completion does not follow a's state: a refolds from the log, unwritten from just past
    // its state (its create) — below b's change, which became dirty first.
    await repo.apply(TENANT, a, complete(a, "w1"), { now: at(2) })
    await project(docs, [], log.events(seqOf()))
    expect(docs.stateOf(TENANT, a)?.status).toBe("COMPLETED")
    expect(docs.durableThrough(seqOf())).toBe(aCreated)
    // Every write fails: all of them are unwritten again from where they were, and a later create
    // becomes dirty after them.
    fail(true)
    await expect(docs.flush(true)).rejects.toThrow("no ack")
    await repo.apply(TENANT, c, create(c), { now: at(3) })
    await project(docs, [], log.events(seqOf()))
    expect(docs.durableThrough(seqOf())).toBe(aCreated)
    fail(false)
    await docs.flush(true)
    expect(docs.durableThrough(seqOf())).toBe(seqOf())
    for (const id of [a, b, c]) expect(documentOf(bucket, id)).toEqual(fold((await log.readTask(TENANT, id)).events))
  })

  it("forgets an ended task once it is written (read back from the bucket for a later event), keeps running ones", async () => {
    const log = new InMemoryEventLog(naming)
    const repo = new TaskRepository(log, new Telemetry())
    const [running, ended] = [randomUUID(), randomUUID()]
    await repo.apply(TENANT, running, create(running), { now: at(0) })
    await repo.apply(TENANT, ended, create(ended, 1), { now: at(0) })
    await repo.apply(TENANT, ended, claim(ended, "w1"), { now: at(1) })
    await repo.apply(TENANT, ended, nack(ended, "w1"), { now: at(2) })
    const states = new InMemoryBucket()
    const docs = new TaskDocs(states, log)
    await project(docs, [], log.events())
    await docs.flush(true)
    // Written, still in memory until the next batch is prepared (never between prepare and apply).
    expect(docs.stateOf(TENANT, ended)?.status).toBe("DEAD_LETTERED")
    const position = log.events().at(-1)?.seq ?? 0
    await repo.apply(TENANT, ended, purge(ended), { now: at(3) })
    await repo.apply(TENANT, running, claim(running, "w2"), { now: at(3) })
    const later = log.events(position + 1)
    await docs.prepare([])
    expect(docs.stateOf(TENANT, ended)).toBeUndefined()
    expect(docs.stateOf(TENANT, running)?.status).toBe("PENDING")
    const changes = await project(docs, [], later)
    // The purge found the dead-lettered state in the bucket and went on from it.
    expect(changes[0]?.before?.status).toBe("DEAD_LETTERED")
    await docs.flush(true)
    for (const id of [ended, running]) expect(documentOf(states, id)).toEqual(fold((await log.readTask(TENANT, id)).events))
    expect(documentOf(states, ended)?.purged).toBe(true)
  })

  it("keeps written documents within maxBytes of JSON, least recently used forgotten first and read back from the bucket when needed", async () => {
    const log = new InMemoryEventLog(naming)
    const repo = new TaskRepository(log, new Telemetry())
    const ids = [randomUUID(), randomUUID(), randomUUID()]
    for (const id of ids) await repo.apply(TENANT, id, create(id), { now: at(0) })
    const states = new InMemoryBucket()
    // Room for two of the three documents' JSON, not three.
    const size = JSON.stringify(fold((await log.readTask(TENANT, ids[0] ?? "")).events)).length
    const docs = new TaskDocs(states, log, { maxBytes: Math.floor(size * 2.5) })
    await project(docs, [], log.events())
    await docs.flush(true)
    await docs.prepare([])
    expect(ids.map((id) => docs.stateOf(TENANT, id) !== undefined)).toEqual([false, true, true])
    // The forgotten one's next event reads it back from the bucket and goes on from it.
    const position = log.events().at(-1)?.seq ?? 0
    await repo.apply(TENANT, ids[0] ?? "", claim(ids[0] ?? "", "w1"), { now: at(1) })
    const [change] = await project(docs, [], log.events(position + 1))
    expect(change?.before?.status).toBe("PENDING")
    expect(change?.after?.status).toBe("IN_PROGRESS")
    await docs.flush(true)
    expect(documentOf(states, ids[0] ?? "")).toEqual(fold((await log.readTask(TENANT, ids[0] ?? "")).events))
  })

  it("never forgets a document between a batch's prepare and its apply, whatever a flush beside it does", async () => {
    const log = new InMemoryEventLog(naming)
    const repo = new TaskRepository(log, new Telemetry())
    const [a, b, c, d] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()]
    const bucket = new InMemoryBucket()
    // d's document is in the bucket only (written by an earlier fold).
    await repo.apply(TENANT, d, create(d), { now: at(0) })
    const earlier = new TaskDocs(bucket, log)
    await project(earlier, [], log.events())
    await earlier.flush(true)
    let position = log.events().at(-1)?.seq ?? 0
    // Reading d back waits until released: the window in which a flush runs beside the fold.
    let release = () => {}
    const held = new Promise<void>((resolve) => (release = resolve))
    const store = {
      get: async (key: string) => {
        if (key === taskStateKey(TENANT, d)) await held
        return bucket.get(key)
      },
      putUnacked: (key: string, value: Uint8Array) => bucket.putUnacked(key, value),
      barrier: () => bucket.barrier()
    }
    const docs = new TaskDocs(store, log, { capacity: 2, writeAfterMs: 60_000 })
    for (const id of [a, b]) await repo.apply(TENANT, id, create(id), { now: at(0) })
    await project(docs, [], log.events(position + 1))
    await docs.flush(true)
    position = log.events().at(-1)?.seq ?? 0
    // One more, unwritten: three documents for a capacity of two, a the least recently used.
    await repo.apply(TENANT, c, create(c), { now: at(1) })
    await project(docs, [], log.events(position + 1))
    position = log.events().at(-1)?.seq ?? 0
    await repo.apply(TENANT, a, claim(a, "w1"), { now: at(2) })
    await repo.apply(TENANT, d, claim(d, "w1"), { now: at(2) })
    const batch = log.events(position + 1)
    const prepared = docs.prepare(batch)
    await docs.flush(false)
    release()
    await prepared
    const changes = batch.map((stored) => docs.apply(stored))
    expect(changes.map((change) => [change.before?.status, change.after?.status])).toEqual([
      ["PENDING", "IN_PROGRESS"],
      ["PENDING", "IN_PROGRESS"]
    ])
  })
  it("runs a flush for every asker, one at a time: askers during a run share the next one, started after it", async () => {
    const runs: Array<{ readonly done: () => void }> = []
    const work = oneAfterAnother(() => new Promise<void>((resolve) => runs.push({ done: resolve })))
    const first = work()
    const [second, third] = [work(), work()]
    expect(second).toBe(third)
    // The second run waits for the first to end: an asker may want what the first had already passed.
    await Promise.resolve()
    expect(runs.length).toBe(1)
    runs[0]?.done()
    await first
    await waitUntil(() => runs.length === 2)
    const fourth = work()
    expect(fourth).not.toBe(second)
    runs[1]?.done()
    await second
    await waitUntil(() => runs.length === 3)
    runs[2]?.done()
    await fourth
    expect(runs.length).toBe(3)
  })
})
