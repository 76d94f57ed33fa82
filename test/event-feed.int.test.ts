/**
 * The projections' reader of the log (src/eventlog/feed.ts) keeps its own position: after the
 * connection is re-established it reads on from the last event it handed out, never from where a
 * consumer that outlived the connection says it is — that consumer may count as delivered what
 * never reached the reader.
 */
import { connect, type NatsConnection } from "nats"
import { afterAll, describe, expect, it } from "vitest"
import { parseAckSubject } from "../src/eventlog/acks.js"
import { EventFeed } from "../src/eventlog/feed.js"
import { eventSubject, eventsStream } from "../streams/definitions.js"
import { freshNaming, provision, useNatsServer, waitFor } from "./support/harness.js"

const nats = useNatsServer()

describe("event feed", () => {
  const connections: Array<NatsConnection> = []
  afterAll(async () => {
    await Promise.allSettled(connections.map((nc) => nc.close()))
  })

  it("after a reconnect reads on from its own position, not from a consumer that delivered elsewhere meanwhile", async () => {
    const nc = await connect({ servers: nats.url(), maxReconnectAttempts: -1, reconnectTimeWait: 50 })
    const other = await connect({ servers: nats.url() })
    connections.push(nc, other)
    const naming = freshNaming()
    await provision(nc, naming)
    const stream = eventsStream(naming)
    const js = other.jetstream()
    const jsm = await nc.jetstreamManager()
    const append = async (n: number) => {
      for (let i = 0; i < n; i++) await js.publish(eventSubject(naming, "acme", `t${i}`), new Uint8Array([i]))
    }
    const feed = new EventFeed(nc, naming, { fromSeq: 1, batch: 2 })
    const seen: Array<number> = []
    const read = async () => {
      for (const raw of await feed.next(50)) seen.push(raw.seq)
    }

    await append(4)
    await waitFor(async () => (await read(), seen.length === 4), { what: "the first four events read" })
    // Once the feed's open pull has expired, a request on its consumer from elsewhere takes the
    // next 3 events: the server counts 7 delivered while the feed handed out 4 — as when a server
    // sent events into a connection that then dropped.
    const consumer = (await waitFor(async () => {
      for await (const info of jsm.consumers.list(stream)) if (info.num_waiting === 0) return info
      return undefined
    }, { what: "the feed's pull to expire" })).name
    await append(3)
    const stolen: Array<number> = []
    const inbox = `_INBOX.steal.${consumer}`
    other.subscribe(inbox, { callback: (_err, msg) => void (msg.reply !== undefined && stolen.push(parseAckSubject(msg.reply).streamSeq)) })
    other.publish(`$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumer}`, new TextEncoder().encode(JSON.stringify({ batch: 3, no_wait: true })), { reply: inbox })
    await waitFor(() => stolen.length === 3, { what: "three events delivered to the other request" })

    await nc.reconnect()
    await append(1)
    await waitFor(async () => (await read(), seen.includes(8)), { what: "the event appended after the reconnect" })
    expect(stolen).toEqual([5, 6, 7])
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    // The consumer it left is removed, not left to idle out.
    await waitFor(async () => {
      const names: Array<string> = []
      for await (const info of jsm.consumers.list(stream)) names.push(info.name)
      return names.length === 1 && names[0] !== consumer
    }, { what: "one consumer left, the new one" })
    await feed.close()
  })
})
