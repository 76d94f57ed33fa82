/**
 * The outbox's bursts, written as protocol frames (src/eventlog/frames.ts), arrive as nats.js's own
 * `publish` would have sent them; a message nats.js would refuse is refused alone.
 */
import { describe, expect, it } from "vitest"
import { ErrorCode, headers, type Msg, type MsgHdrs, type NatsConnection } from "nats"
import { MAX_FRAME_BYTES, wireOf } from "../src/eventlog/frames.js"
import { publishSoon } from "../src/eventlog/outbox.js"
import { WireHeaders } from "../src/eventlog/wireHeaders.js"
import { useNatsServer, waitFor } from "./support/harness.js"

const nats = useNatsServer()

interface Sent {
  readonly subject: string
  readonly data: Uint8Array
  readonly reply?: string
  readonly headers?: MsgHdrs
}

/** What a subscriber sees of a message: everything a publish decides. */
const seen = (m: Msg) => ({
  subject: m.subject,
  reply: m.reply ?? "",
  headers: m.headers === undefined ? undefined : [...m.headers].map(([key, values]) => [key, [...values]]),
  data: Buffer.from(m.data).toString("base64")
})

/** Subscribes to `prefix.>` on a connection of its own and collects what arrives. */
const collect = async (prefix: string) => {
  const nc = await nats.connect()
  const got: Array<ReturnType<typeof seen>> = []
  nc.subscribe(`${prefix}.>`, { callback: (_err, m) => got.push(seen(m)) })
  await nc.flush()
  return got
}

const wire = (pairs: ReadonlyArray<readonly [string, string]>): WireHeaders => {
  const h = new WireHeaders()
  for (const [key, value] of pairs) h.append(key, value)
  return h
}

/** Messages of every shape the outbox is given: headers of both kinds or none, a reply or none. */
const shapes = (prefix: string): Array<Sent> => {
  const theirs = headers()
  theirs.append("X-Repeated", "one")
  theirs.append("X-Repeated", "two")
  return [
    { subject: `${prefix}.a`, data: Buffer.from('{"v":1}'), reply: "_INBOX.frames.1", headers: wire([["Codeq-Event", "TaskCreated"], ["traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]]) },
    { subject: `${prefix}.b`, data: Buffer.from("plain, no reply") },
    { subject: `${prefix}.c`, data: new Uint8Array(), reply: "_INBOX.frames.2" },
    { subject: `${prefix}.d`, data: Buffer.from([0, 13, 10, 255, 13, 10]), headers: theirs },
    { subject: `${prefix}.e`, data: Buffer.from("é ✓ ünïcödé"), headers: wire([["X-Text", "välue ✓"]]) },
    { subject: `${prefix}.f`, data: Buffer.alloc(70_000, 7), reply: "_INBOX.frames.3", headers: wire([["A", "1"], ["B", "2"]]) },
    { subject: `${prefix}.g`, data: new Uint8Array(), headers: wire([["KV-Operation", "DEL"]]) }
  ]
}

const byPublish = (nc: NatsConnection, messages: ReadonlyArray<Sent>) => {
  for (const m of messages) nc.publish(m.subject, m.data, { ...(m.reply !== undefined ? { reply: m.reply } : {}), ...(m.headers !== undefined ? { headers: m.headers } : {}) })
}

const bySoon = (nc: NatsConnection, messages: ReadonlyArray<Sent>, onError?: (error: unknown, subject: string) => void) => {
  for (const m of messages)
    publishSoon(nc, m.subject, m.data, { ...(m.reply !== undefined ? { reply: m.reply } : {}), ...(m.headers !== undefined ? { headers: m.headers } : {}) }, onError)
}

const codeOf = (error: unknown): unknown => (error as { code?: unknown }).code

describe("publishes written as frames", () => {
  it("uses the frame path with the pinned nats.js", async () => {
    // A nats.js upgrade that moves its protocol handler would silently fall back to publishing one
    // by one: this says so instead.
    expect(wireOf(await nats.connect())).toBeDefined()
  })

  it("delivers a burst of every shape as nats.js's publish does, in order", async () => {
    const theirs = await collect("frames.theirs")
    const ours = await collect("frames.ours")
    const nc = await nats.connect()
    byPublish(nc, shapes("frames.theirs"))
    bySoon(nc, shapes("frames.ours"))
    await waitFor(() => theirs.length === 7 && ours.length === 7, { what: "both bursts delivered" })
    const renamed = ours.map((m) => ({ ...m, subject: m.subject.replace("frames.ours", "frames.theirs") }))
    expect(renamed).toEqual(theirs)
    expect(ours.map((m) => m.subject.slice(-1))).toEqual(["a", "b", "c", "d", "e", "f", "g"])
  })

  it("publishes message by message through nats.js where its protocol handler is not reachable", async () => {
    const theirs = await collect("frames.plain")
    const ours = await collect("frames.fallback")
    const nc = await nats.connect()
    // The same connection, seen without the internal the frames use.
    const hidden = new Proxy(nc, {
      get: (target, key) => {
        if (key === "protocol") return undefined
        const value: unknown = Reflect.get(target, key, target)
        return typeof value === "function" ? (value as (...args: Array<unknown>) => unknown).bind(target) : value
      }
    })
    expect(wireOf(hidden)).toBeUndefined()
    byPublish(nc, shapes("frames.plain"))
    bySoon(hidden, shapes("frames.fallback"))
    await waitFor(() => theirs.length === 7 && ours.length === 7, { what: "both bursts delivered" })
    expect(ours.map((m) => ({ ...m, subject: m.subject.replace("frames.fallback", "frames.plain") }))).toEqual(theirs)
  })

  it("splits a burst larger than a frame into frames, every message whole and in order", async () => {
    const got = await collect("frames.split")
    const nc = await nats.connect()
    const big = Math.floor(MAX_FRAME_BYTES / 3)
    const messages: Array<Sent> = []
    for (let i = 0; i < 12; i++)
      messages.push(i % 3 === 2 ? { subject: `frames.split.${i}`, data: Buffer.from(`small ${i}`) } : { subject: `frames.split.${i}`, data: Buffer.alloc(big, i), headers: wire([["N", String(i)]]) })
    bySoon(nc, messages)
    await waitFor(() => got.length === messages.length, { what: "every message of the burst" })
    expect(got.map((m) => m.subject)).toEqual(messages.map((m) => m.subject))
    expect(got.map((m, i) => Buffer.from(m.data, "base64").equals(messages[i]!.data))).toEqual(messages.map(() => true))
  })

  it("refuses a message over the server's max_payload alone, with nats.js's error, and sends the rest", async () => {
    const got = await collect("frames.big")
    const nc = await nats.connect()
    const max = nc.info?.max_payload ?? 0
    expect(max).toBeGreaterThan(0)
    const before = nc.stats().outMsgs
    const errors: Array<[string, unknown]> = []
    bySoon(
      nc,
      [
        { subject: "frames.big.1", data: Buffer.from("first") },
        { subject: "frames.big.2", data: Buffer.alloc(max + 1) },
        // Headers count towards the limit, as nats.js counts them.
        { subject: "frames.big.3", data: Buffer.alloc(max - 5), headers: wire([["A", "b"]]) },
        { subject: "frames.big.4", data: Buffer.alloc(max) },
        { subject: "", data: Buffer.from("no subject") },
        { subject: "frames.big.5", data: Buffer.from("last") }
      ],
      (error, subject) => errors.push([subject, codeOf(error)])
    )
    await waitFor(() => got.length === 3, { what: "the rest delivered" })
    expect(got.map((m) => m.subject)).toEqual(["frames.big.1", "frames.big.4", "frames.big.5"])
    expect(errors).toEqual([
      ["frames.big.2", ErrorCode.MaxPayloadExceeded],
      ["frames.big.3", ErrorCode.MaxPayloadExceeded],
      ["", ErrorCode.BadSubject]
    ])
    // The connection's counters count what was sent, as nats.js's publish counts it.
    expect(nc.stats().outMsgs - before).toBe(3)
  })

  it("tells every caller of a burst on a closed connection", async () => {
    const nc = await nats.connect()
    await nc.close()
    const errors: Array<unknown> = []
    bySoon(nc, shapes("frames.closed"), (error) => errors.push(codeOf(error)))
    await waitFor(() => errors.length === 7, { what: "every publish refused" })
    expect(new Set(errors)).toEqual(new Set([ErrorCode.ConnectionClosed]))
  })
})
