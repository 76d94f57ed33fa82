import { describe, expect, it } from "vitest"
import type { NatsConnection } from "nats"
import { CountedPublisher } from "../src/eventlog/counted.js"
import { dedupHeaders, PipelinedPublisher } from "../src/eventlog/pipeline.js"
import { claimBarrierSubject, claimSubject, claimsStream } from "../streams/definitions.js"
import { claimCount, freshNaming, provision, useNatsServer } from "./support/harness.js"

const nats = useNatsServer()

/** Publishes `ids` in one turn (one burst, one barrier) and waits for every answer. */
const burst = (counted: CountedPublisher, subject: string, stream: string, ids: ReadonlyArray<string>): Promise<Array<boolean>> =>
  Promise.all(ids.map((id) => counted.publish(subject, new TextEncoder().encode(id), dedupHeaders(id, stream))))

const storedIds = async (nc: NatsConnection, stream: string): Promise<Array<string>> => {
  const jsm = await nc.jetstreamManager()
  const info = await jsm.streams.info(stream)
  const ids: Array<string> = []
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) ids.push((await jsm.streams.getMessage(stream, { seq })).header.get("Nats-Msg-Id"))
  return ids
}

/** A fresh claims stream, a publisher on it, and one lane's subject. */
const setup = async () => {
  const naming = freshNaming()
  const nc = await nats.connect()
  await provision(nc, naming)
  const publisher = new PipelinedPublisher(nc)
  return { naming, nc, publisher, counted: new CountedPublisher(publisher, claimBarrierSubject(naming)), subject: claimSubject(naming, "acme", "encode", 5) }
}

describe("publishes counted in by a barrier", () => {
  it("confirms bursts the stream stored whole, in order, and stores nothing for the barriers", async () => {
    const { naming, nc, publisher, counted, subject } = await setup()
    const ids: Array<string> = []
    // Bursts of several sizes, one after another and two in flight at once.
    for (const size of [1, 500, 37]) {
      const batch = Array.from({ length: size }, (_, i) => `a-${ids.length + i}`)
      ids.push(...batch)
      expect(await burst(counted, subject, claimsStream(naming), batch)).toEqual(batch.map(() => true))
    }
    const first = Array.from({ length: 300 }, (_, i) => `b-${i}`)
    const firstAnswers = burst(counted, subject, claimsStream(naming), first)
    await new Promise<void>((resolve) => setImmediate(resolve))
    const second = Array.from({ length: 300 }, (_, i) => `c-${i}`)
    const answers = await Promise.all([firstAnswers, burst(counted, subject, claimsStream(naming), second)])
    expect(answers.flat().every((stored) => stored)).toBe(true)
    ids.push(...first, ...second)
    expect(await storedIds(nc, claimsStream(naming))).toEqual(ids)
    publisher.close()
    await nc.close()
  })

  it("leaves a burst unconfirmed when the stream dropped a duplicate or refused a publish, and goes on confirming the next", async () => {
    const { naming, nc, publisher, counted, subject } = await setup()
    const stream = claimsStream(naming)
    expect(await burst(counted, subject, stream, ["x-1", "x-2"])).toEqual([true, true])

    // A replayed message id: the stream keeps the first and drops this one.
    expect(await burst(counted, subject, stream, ["x-3", "x-1", "x-4"])).toEqual([false, false, false])
    expect(await burst(counted, subject, stream, ["x-5"])).toEqual([true])

    // A publish the stream refuses (it names another stream) in the middle of a burst.
    const refused = counted.publish(subject, new Uint8Array([1]), dedupHeaders("x-6", "NOT_THE_CLAIMS_STREAM"))
    const around = burst(counted, subject, stream, ["x-7"])
    expect([await refused, ...(await around)]).toEqual([false, false])
    expect(await burst(counted, subject, stream, ["x-8", "x-9"])).toEqual([true, true])

    expect(await storedIds(nc, stream)).toEqual(["x-1", "x-2", "x-3", "x-4", "x-5", "x-7", "x-8", "x-9"])
    expect(await claimCount(nc, naming)).toBe(8)
    publisher.close()
    await nc.close()
  })

  it("sends one barrier per burst, none for a publish alone in its turn (acked: two messages where a barrier makes three)", async () => {
    const { naming, nc, publisher, counted, subject } = await setup()
    const stream = claimsStream(naming)
    let barriers = 0
    nc.subscribe(claimBarrierSubject(naming), { callback: () => barriers++ })
    await nc.flush()
    // The barrier's answer can come ahead of its copy to the subscriber: a round trip on the
    // connection before each count lets every copy the server sent before it arrive.
    const seen = async () => {
      await nc.flush()
      return barriers
    }
    for (let i = 0; i < 5; i++) expect(await burst(counted, subject, stream, [`alone-${i}`])).toEqual([true])
    expect(await seen()).toBe(0)
    // The last ack told the last sequence: the burst is counted from it, with one barrier after it.
    const many = Array.from({ length: 100 }, (_, i) => `many-${i}`)
    expect((await burst(counted, subject, stream, many)).every((stored) => stored)).toBe(true)
    expect(await seen()).toBe(1)
    // A publisher that knows no last sequence yet asks for one ahead of its first burst.
    const fresh = new CountedPublisher(publisher, claimBarrierSubject(naming))
    expect(await burst(fresh, subject, stream, ["fresh-1", "fresh-2"])).toEqual([true, true])
    expect(await seen()).toBe(3)
    expect(await storedIds(nc, stream)).toEqual([...Array.from({ length: 5 }, (_, i) => `alone-${i}`), ...many, "fresh-1", "fresh-2"])
    publisher.close()
    await nc.close()
  })

  it("confirms nothing once the connection is closed", async () => {
    const { naming, nc, publisher, counted, subject } = await setup()
    expect(await burst(counted, subject, claimsStream(naming), ["y-1"])).toEqual([true])
    const answer = counted.publish(subject, new Uint8Array([1]), dedupHeaders("y-2", claimsStream(naming)))
    await nc.close()
    publisher.close()
    expect(await answer).toBe(false)
  })
})
