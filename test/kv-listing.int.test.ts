/**
 * Listing a key-value bucket while it is written (src/eventlog/kv.ts: scanBucket, liveEntries).
 * The dead-letter queue, the task listing and the metrics' dead-letter depth list buckets that
 * the broker writes all the time; nats.js's `keys()` ended a listing only at a quiet moment, so
 * under writes it went on for seconds (one in four listings 4-5 s, measured) — as long as they did.
 */
import { describe, expect, it } from "vitest"
import { randomBytes } from "node:crypto"
import { findDeleteMarkers, liveEntries, openBucket, purgeDeleteMarkers, scanBucket, type BucketWatch } from "../src/eventlog/kv.js"
import { startBroker } from "../src/broker.js"
import { CodeqClient } from "../src/sdk/client.js"
import { DeadLetterUpkeep } from "../projections/deadLetters.js"
import { subjectCounts } from "../src/eventlog/streams.js"
import { deadLetterBucket } from "../streams/definitions.js"
import { brokerConfig, freshNaming, quietLogger, useNatsServer, waitFor } from "./support/harness.js"

const nats = useNatsServer()
const value = new TextEncoder().encode("{}")

describe("listing a key-value bucket", () => {
  it("ends every listing while keys under its filter and beside it are put and deleted, with every key that stays and none deleted before", async () => {
    const nc = await nats.connect()
    const kv = await openBucket(nc, `LIST_${randomBytes(4).toString("hex")}`)
    const stable = ["acme.cmd.a", "acme.cmd.b", "acme.cmd.c"]
    for (const key of stable) await kv.put(key, value)
    await kv.put("acme.cmd.gone", value)
    await kv.delete("acme.cmd.gone")
    await kv.put("acme.other.x", value)

    // Writers as the projections write: a fresh key put, then deleted a moment later, one after
    // another — one under the listed filter, two beside it.
    let writes = 0
    let stopped = false
    const writer = async (prefix: string) => {
      for (let i = 0; !stopped; i++) {
        const key = `${prefix}.churn-${i}`
        await kv.put(key, value)
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 3))
        await kv.delete(key)
        writes += 2
      }
    }
    const writers = ["acme.cmd", "acme.other", "globex.cmd"].map(writer)
    try {
      // Bound in writes, not time: nats.js's keys() let one listing in four run past 2,000 of them.
      const MAX_WRITES = 1_000
      for (let listing = 0; listing < 20; listing++) {
        const before = writes
        const keys = [...(await liveEntries(kv, "acme.cmd.*")).keys()]
        expect(writes - before, `writes during listing ${listing}`).toBeLessThan(MAX_WRITES)
        expect(keys).toEqual(expect.arrayContaining(stable))
        expect(keys.filter((key) => !stable.includes(key)).every((key) => key.startsWith("acme.cmd.churn-")), keys.join(", ")).toBe(true)
      }
    } finally {
      stopped = true
      await Promise.all(writers)
    }
  })

  it("reads values, or headers only, and leaves out deleted keys", async () => {
    const nc = await nats.connect()
    const kv = await openBucket(nc, `LIST_${randomBytes(4).toString("hex")}`)
    await kv.put("t.k1", new TextEncoder().encode("one"))
    await kv.put("t.k2", new TextEncoder().encode("two"))
    await kv.put("t.k2", new TextEncoder().encode("two again"))
    await kv.put("t.k3", new TextEncoder().encode("three"))
    await kv.delete("t.k3")
    const live = await liveEntries(kv, "t.*")
    expect(new Map([...live].map(([key, entry]) => [key, new TextDecoder().decode(entry.value)]))).toEqual(new Map([["t.k1", "one"], ["t.k2", "two again"]]))
    const headers = await liveEntries(kv, "t.*", { headersOnly: true })
    expect([...headers.keys()].sort()).toEqual(["t.k1", "t.k2"])
    expect([...headers.values()].every((entry) => entry.value.length === 0)).toBe(true)
    expect((await liveEntries(kv, "nothing.*")).size).toBe(0)
  })

  it("gives up with an error naming the filter when the watch delivers nothing before it is done", async () => {
    // A watch of the port that yields nothing until stopped.
    let stopped = false
    let release = () => {}
    const released = new Promise<void>((resolve) => (release = resolve))
    const silent: BucketWatch = {
      stop: () => {
        stopped = true
        release()
      },
      [Symbol.asyncIterator]: async function* () {
        await released
      }
    }
    await expect(scanBucket({ watch: async () => silent }, "acme.*", () => undefined, { idleMs: 50 })).rejects.toThrow(/listing acme\.\*: the watch delivered nothing for 50 ms/)
    expect(stopped).toBe(true)
  })
})

describe("delete markers", () => {
  it("removes the markers old enough, and never a value written to the key after its marker", async () => {
    const nc = await nats.connect()
    const bucket = `MARK_${randomBytes(4).toString("hex")}`
    const kv = await openBucket(nc, bucket)
    for (const key of ["t.a", "t.b"]) {
      await kv.put(key, value)
      await kv.delete(key)
    }
    await kv.put("t.c", value)
    expect(await findDeleteMarkers(kv, 60_000, 100)).toEqual([])
    const markers = await findDeleteMarkers(kv, 0, 100)
    expect(markers.map((m) => m.key).sort()).toEqual(["t.a", "t.b"])
    // Written after its marker was found, before the marker is removed.
    await kv.put("t.b", new TextEncoder().encode("again"))
    expect(await purgeDeleteMarkers(nc, bucket, markers)).toBe(1)
    expect(Object.keys(await subjectCounts(nc, `KV_${bucket}`, ">")).sort()).toEqual([`$KV.${bucket}.t.b`, `$KV.${bucket}.t.c`])
    expect(new TextDecoder().decode((await liveEntries(kv, "t.*")).get("t.b")?.value)).toBe("again")
    expect(await findDeleteMarkers(kv, 0, 100)).toEqual([])
  })

  it("takes out of the dead-letter index the marker a requeue left, on the projections' leader only, and keeps the entries of dead letters", async () => {
    const naming = freshNaming()
    const broker = await startBroker(brokerConfig(nats.url(), naming))
    const client = await CodeqClient.connect({ servers: nats.url(), naming })
    try {
      const producer = client.producer("acme")
      const tasks = [await producer.create({ command: "mark", maxAttempts: 1 }), await producer.create({ command: "mark", maxAttempts: 1 })]
      for (let i = 0; i < tasks.length; i++) {
        const claimed = await client.tasks.claim("acme", ["mark"], { workerId: "w", waitSeconds: 10 })
        await client.tasks.settleLease("acme", claimed?.task.id ?? "", { workerId: "w" }, { type: "nack", reason: "no", delaySeconds: 0 })
      }
      await waitFor(async () => (await client.tasks.deadLetters("acme", "mark")).length === 2, { what: "two dead letters" })
      const [requeued, kept] = tasks
      await client.tasks.requeue("acme", requeued?.id ?? "")
      await waitFor(async () => (await client.tasks.deadLetters("acme", "mark")).length === 1, { what: "the requeue in the index" })
      const nc = await nats.connect()
      const bucket = deadLetterBucket(naming)
      const kv = await openBucket(nc, bucket)
      const stored = async () => Object.keys(await subjectCounts(nc, `KV_${bucket}`, ">")).sort()
      const before = await stored()
      expect(before).toEqual([`$KV.${bucket}.acme.mark.${kept?.id}`, `$KV.${bucket}.acme.mark.${requeued?.id}`].sort())
      // A broker that does not lead the projections leaves the markers to the one that does.
      let leading = false
      const upkeep = new DeadLetterUpkeep(nc, kv, naming, { leading: () => leading, log: quietLogger, olderThanMs: 0 })
      try {
        await upkeep.pass()
        expect(await stored()).toEqual(before)
        // One marker, which replaced the entry it deletes (one entry per key): its subject goes.
        leading = true
        await upkeep.pass()
        expect(await stored()).toEqual([`$KV.${bucket}.acme.mark.${kept?.id}`])
      } finally {
        await upkeep.stop()
      }
      expect((await client.tasks.deadLetters("acme", "mark")).map((entry) => entry.taskId)).toEqual([kept?.id])
    } finally {
      await client.close()
      await broker.stop()
    }
  })
})
