import { describe, expect, it } from "vitest"
import { startBroker } from "../src/broker.js"
import { decodeClaim } from "../src/eventlog/claims/message.js"
import { CodeqClient } from "../src/sdk/client.js"
import { claimsStream, projectionsBucket } from "../streams/definitions.js"
import type { RunningBroker } from "../src/broker.js"
import { brokerConfig, claimCount, freshNaming, projectionsCaughtUp, provision, useNatsServer, waitFor } from "./support/harness.js"

const nats = useNatsServer()

describe("the dispatcher", () => {
  it("dispatches every created task exactly once when interrupted mid-stream and replayed from the start", async () => {
    const naming = freshNaming()
    const nc = await nats.connect()
    await provision(nc, naming)
    const client = await CodeqClient.connect({ connection: nc, naming })
    const total = 3000
    const created = await client.producer("acme").createMany(
      Array.from({ length: total }, (_, i) => ({ command: ["a", "b", "c"][i % 3] ?? "a", priority: i % 10 }))
    )
    const ids = new Set(created.map((r) => (r.ok ? r.task.id : "")))
    expect(ids.size).toBe(total)

    // Another holder has the projections lease: the broker stands by until it is given up, so the
    // test holds the broker's handle before the first event is folded.
    const leases = await nc.jetstream().views.kv(projectionsBucket(naming))
    await leases.create("leader", new TextEncoder().encode(JSON.stringify({ holder: "test", until: Date.now() + 3_600_000 })))
    let handled = 0
    let interrupted: Promise<void> | undefined
    const ref: { broker?: RunningBroker } = {}
    const first = await startBroker(brokerConfig(nats.url(), naming), {
      connection: nc,
      onHandled: () => {
        // Stops right after this event: the rest of the log is not dispatched.
        if (++handled === total / 3) interrupted = ref.broker?.projections.stop()
      }
    })
    ref.broker = first
    await leases.delete("leader")
    await waitFor(() => interrupted !== undefined, { what: "a third of the events" })
    await interrupted
    await first.stop()
    const afterInterrupt = await claimCount(nc, naming)
    expect(afterInterrupt).toBe(total / 3)

    // The saved position is dropped: the next broker replays every event, dispatched or not.
    await leases.purge("position")
    const second = await startBroker(brokerConfig(nats.url(), naming), { connection: nc })
    const jsm = await nc.jetstreamManager()
    await waitFor(() => projectionsCaughtUp(second, nc, naming, ["dispatcher"]), { what: "the dispatcher to catch up" })
    await second.stop()

    expect(await claimCount(nc, naming)).toBe(total)
    const dispatched: Array<string> = []
    for (let seq = 1; seq <= total; seq++) {
      const msg = await jsm.streams.getMessage(claimsStream(naming), { seq })
      dispatched.push(decodeClaim(msg.data)?.taskId ?? "")
    }
    expect(new Set(dispatched).size).toBe(total)
    expect(dispatched.every((id) => ids.has(id))).toBe(true)
    await client.close()
  })

  it("puts each claim on its tenant, command and priority lane with a message id derived from the event", async () => {
    const naming = freshNaming()
    const nc = await nats.connect()
    await provision(nc, naming)
    const client = await CodeqClient.connect({ connection: nc, naming })
    const task = await client.producer("acme").create({ command: "encode", priority: 7 })
    const broker = await startBroker(brokerConfig(nats.url(), naming), { connection: nc })
    await waitFor(async () => (await claimCount(nc, naming)) === 1, { what: "one claim" })
    await broker.stop()
    const jsm = await nc.jetstreamManager()
    const msg = await jsm.streams.getMessage(claimsStream(naming), { seq: 1 })
    expect(msg.subject).toBe(`${naming.subjectRoot}.claim.acme.encode.7`)
    expect(msg.header.get("Nats-Msg-Id")).toBe(`acme.${task.id}.1`)
    const claim = decodeClaim(msg.data)
    expect(claim).toMatchObject({ taskId: task.id, tenant: "acme", command: "encode", priority: 7, eventSeq: 1 })
    // It carries the TaskCreated as stored, so a worker claims without reading the log.
    const [created] = (await client.log.readTask("acme", task.id)).events
    expect(claim?.created).toEqual({ event: created?.event, trace: created?.trace, time: created?.time.toISOString() })
    await client.close()
  })
})
