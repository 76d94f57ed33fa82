import { describe, expect, it } from "vitest"
import { startBroker } from "../src/broker.js"
import { decodeClaim } from "../src/claims/message.js"
import { CodeqClient } from "../src/sdk/client.js"
import { durableName } from "../projections/runtime.js"
import { claimsStream, eventsStream } from "../streams/definitions.js"
import { brokerConfig, claimCount, freshNaming, provision, useNatsServer, waitFor } from "./support/harness.js"

const nats = useNatsServer()

describe("the dispatcher", () => {
  it("dispatches every created task exactly once when interrupted mid-stream and restarted", async () => {
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

    let handled = 0
    let reachedThird: () => void = () => {}
    const third = new Promise<void>((resolve) => (reachedThird = resolve))
    const first = await startBroker(brokerConfig(nats.url(), naming), {
      connection: nc,
      onHandled: () => {
        if (++handled === total / 3) reachedThird()
      }
    })
    await third
    await first.stop()
    const afterInterrupt = await claimCount(nc, naming)
    expect(afterInterrupt).toBeGreaterThan(0)
    expect(afterInterrupt).toBeLessThan(total)

    const second = await startBroker(brokerConfig(nats.url(), naming), { connection: nc })
    const jsm = await nc.jetstreamManager()
    await waitFor(
      async () => {
        const info = await jsm.consumers.info(eventsStream(naming), durableName("dispatcher"))
        return info.num_pending === 0 && info.num_ack_pending === 0
      },
      { what: "the dispatcher to catch up" }
    )
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
    expect(decodeClaim(msg.data)).toEqual({ taskId: task.id, tenant: "acme", command: "encode", priority: 7, eventSeq: 1 })
    await client.close()
  })
})
