/**
 * Header blocks read from delivered messages without nats.js's header objects (rawHeaders.ts):
 * the same text nats.js would decode, the status of a status message, and the fallback that
 * writes a block back from decoded headers.
 */
import { connect, createInbox, headers, type Msg, type NatsConnection } from "nats"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { headerBlockOf, headerReader, statusCodeOf, statusOfMessage, statusTextOf } from "../src/eventlog/rawHeaders.js"
import { startNatsServer, type NatsServerHandle } from "../src/testing/natsServer.js"

let server: NatsServerHandle
let nc: NatsConnection
beforeAll(async () => {
  server = await startNatsServer({ ownServer: true })
  nc = await connect({ servers: server.url, noAsyncTraces: true })
})
afterAll(async () => {
  await nc.close()
  await server.stop()
})

/** The first message on `subject` after `send()`, subscribed (and the subscription known to the server) before it. */
const receiveOne = async (subject: string, send: () => void): Promise<Msg> => {
  const received = new Promise<Msg>((resolve) => nc.subscribe(subject, { max: 1, callback: (_error, msg) => resolve(msg) }))
  await nc.flush()
  send()
  return received
}

describe("headerBlockOf", () => {
  it("gives a delivered message's block as sent, and its headers as nats.js reads them", async () => {
    const subject = createInbox()
    const h = headers()
    h.set("Codeq-Event", "TaskCreated")
    h.set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    h.set("X-Other", "ünïcode ok")
    const msg = await receiveOne(subject, () => nc.publish(subject, new TextEncoder().encode("{}"), { headers: h }))
    const block = headerBlockOf(msg)
    expect(block).toBe("NATS/1.0\r\nCodeq-Event: TaskCreated\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nX-Other: ünïcode ok\r\n\r\n")
    expect(statusCodeOf(block)).toBe(0)
    expect(statusOfMessage(msg)).toBe(0)
    const header = headerReader(block)
    for (const key of ["Codeq-Event", "traceparent", "X-Other"]) expect(header(key)).toBe(msg.headers?.get(key))
    expect(header("tracestate")).toBeUndefined()
    expect(header("Absent")).toBeUndefined()
    // The body is untouched.
    expect(new TextDecoder().decode(msg.data)).toBe("{}")
  })

  it("is undefined without headers, and reads a status message's code", async () => {
    const subject = createInbox()
    const plain = await receiveOne(subject, () => nc.publish(subject, new Uint8Array([1])))
    expect(headerBlockOf(plain)).toBeUndefined()
    expect(statusOfMessage(plain)).toBe(0)
    expect(statusCodeOf(undefined)).toBe(0)
    expect(headerReader(undefined)("Anything")).toBeUndefined()
    // No responders: the server answers a request with a 503 status message.
    const reply = createInbox()
    const status = await receiveOne(reply, () => nc.publish(createInbox(), new Uint8Array(), { reply }))
    expect(statusCodeOf(headerBlockOf(status))).toBe(status.headers?.code)
    expect(statusOfMessage(status)).toBe(503)
    expect(status.headers?.code).toBe(503)
    expect(statusTextOf(headerBlockOf(status) ?? "")).toBe(`503 ${status.headers?.description ?? ""}`.trim())
  })

  it("writes the block back from decoded headers when the message lacks nats.js's fields", async () => {
    const subject = createInbox()
    const h = headers()
    h.set("A", "1")
    const msg = await receiveOne(subject, () => nc.publish(subject, new Uint8Array(), { headers: h }))
    const bare: Msg = Object.assign(Object.create(null) as object, { headers: msg.headers, data: msg.data, subject: msg.subject }) as Msg
    expect(headerBlockOf(bare)).toBe("NATS/1.0\r\nA: 1\r\n\r\n")
    expect(statusOfMessage(bare)).toBe(0)
  })
})
