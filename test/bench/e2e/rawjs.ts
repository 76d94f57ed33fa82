/**
 * The raw JetStream ceiling with the same client codeq uses (nats.js, `noAsyncTraces`), in a
 * process of its own against a private nats-server: what a task broker on this machine could at
 * best do per message.
 *
 * - Acked publishes, pipelined (DESIGN §9): core publishes with a reply subject under one shared
 *   inbox subscription, acks matched back by a map, up to 4,096 in flight. Written here rather
 *   than imported, so the ceiling does not move when the broker's publisher changes.
 * - Consume + ack of the same messages with a pull consumer (batches of 256, explicit acks),
 *   until every message was received and acked; the consumer's ack floor confirms it.
 */
import { randomBytes } from "node:crypto"
import { join } from "node:path"
import { AckPolicy, connect, createInbox, StorageType, type NatsConnection } from "nats"
import type { RunContext } from "./codeqRun.js"
import { ErrorLog, runChild, type RawResult } from "./ipc.js"
import { ProcessGroup } from "./processes.js"
import { startPrivateNats, type PrivateNats } from "./stack.js"

const MAX_IN_FLIGHT = 4_096
const CONSUME_BATCH = 256
const DEADLINE_MS = 120_000

interface RawConfig {
  readonly natsUrl: string
  readonly messages: number
  readonly payloadBytes: number
}

/** Publishes `count` messages with acks pipelined; resolves with the acked count. */
const publishPipelined = async (nc: NatsConnection, subject: string, count: number, body: Uint8Array, errors: ErrorLog): Promise<number> => {
  const inbox = createInbox()
  const decoder = new TextDecoder()
  const pending = new Set<number>()
  let acked = 0
  let expired = false
  let waiter: (() => void) | undefined
  const notify = () => {
    const wake = waiter
    waiter = undefined
    wake?.()
  }
  const sub = nc.subscribe(`${inbox}.*`, {
    callback: (error, msg) => {
      if (error !== null) return errors.add(error)
      if (!pending.delete(Number(msg.subject.slice(inbox.length + 1)))) return
      const ack = JSON.parse(decoder.decode(msg.data)) as { seq?: number; error?: { description?: string } }
      if (ack.seq !== undefined) acked++
      else errors.add(new Error(ack.error?.description ?? "publish refused"))
      notify()
    }
  })
  const timer = setTimeout(() => {
    expired = true
    notify()
  }, DEADLINE_MS)
  const waitUntil = async (condition: () => boolean) => {
    while (!condition() && !expired) await new Promise<void>((resolve) => (waiter = resolve))
  }
  for (let i = 0; i < count && !expired; i++) {
    if (pending.size >= MAX_IN_FLIGHT) await waitUntil(() => pending.size < MAX_IN_FLIGHT)
    pending.add(i)
    nc.publish(subject, body, { reply: `${inbox}.${i}` })
  }
  await waitUntil(() => pending.size === 0)
  clearTimeout(timer)
  sub.unsubscribe()
  const unanswered = count - acked - errors.count
  if (unanswered > 0) errors.add(new Error(`${unanswered} publishes unacked within ${DEADLINE_MS} ms`), unanswered)
  return acked
}

/** Consumes and acks `count` messages; resolves with how many were received. */
const consumeAndAck = async (nc: NatsConnection, stream: string, durable: string, count: number): Promise<number> => {
  const consumer = await nc.jetstream().consumers.get(stream, durable)
  const messages = await consumer.consume({ max_messages: CONSUME_BATCH })
  const timer = setTimeout(() => void messages.stop(), DEADLINE_MS)
  let received = 0
  try {
    for await (const m of messages) {
      m.ack()
      if (++received >= count) {
        // STACK: stop the messages before leaving the loop, or closing later hangs.
        messages.stop()
        break
      }
    }
  } finally {
    clearTimeout(timer)
  }
  await nc.flush()
  return received
}

runChild(import.meta.url, async (config: RawConfig) => {
  const nc = await connect({ servers: config.natsUrl, name: "raw-js", noAsyncTraces: true })
  const suffix = randomBytes(4).toString("hex")
  const stream = `RAW_${suffix.toUpperCase()}`
  const subject = `raw_${suffix}.m`
  const jsm = await nc.jetstreamManager()
  await jsm.streams.add({ name: stream, subjects: [`raw_${suffix}.>`], storage: StorageType.File })
  await jsm.consumers.add(stream, { durable_name: "raw", ack_policy: AckPolicy.Explicit, max_ack_pending: 100_000 })
  const body = new Uint8Array(config.payloadBytes).fill(120)
  return async (control) => {
    await control.go
    const errors = new ErrorLog()
    const publishStart = performance.now()
    const published = await publishPipelined(nc, subject, config.messages, body, errors)
    const publishMs = performance.now() - publishStart
    const consumeStart = performance.now()
    const consumed = await consumeAndAck(nc, stream, "raw", published)
    const consumeMs = performance.now() - consumeStart
    // Acks are fire-and-forget; give the server a moment to apply the last ones before reading.
    let ackFloor = 0
    for (let i = 0; i < 40 && ackFloor < consumed; i++) {
      ackFloor = (await jsm.consumers.info(stream, "raw")).ack_floor.stream_seq
      if (ackFloor < consumed) await new Promise((resolve) => setTimeout(resolve, 50))
    }
    await jsm.streams.delete(stream)
    await nc.drain()
    const result: RawResult = { kind: "raw", messages: config.messages, published, publishMs, consumed, consumeMs, ackFloor, failed: errors.count, errors: errors.messages }
    return result
  }
})

export interface RawRunResult {
  readonly system: "raw-js"
  readonly variant: "raw-js"
  readonly round: number
  readonly clean: boolean
  readonly messages: number
  readonly publishPerSec: number
  readonly consumePerSec: number
  readonly raw: RawResult
  readonly errors: ReadonlyArray<string>
}

/** One raw JetStream run: its own nats-server and client process, `tasks` messages. */
export const runRawJs = async (round: number, ctx: RunContext): Promise<RawRunResult> => {
  const group = new ProcessGroup()
  let nats: PrivateNats | undefined
  try {
    nats = await startPrivateNats()
    const config: RawConfig = { natsUrl: nats.url, messages: ctx.options.tasks, payloadBytes: ctx.options.payload }
    const proc = group.fork("./rawjs.ts", config, { name: "raw-js", logFile: join(ctx.logDir, `r${round}-raw-js.log`) })
    await proc.waitFor("ready", 60_000)
    proc.send({ type: "go" })
    const { result } = await proc.waitFor("result", DEADLINE_MS * 2 + 30_000)
    // A child stays until told to stop (ipc.ts); nothing of this one is read after its result.
    proc.send({ type: "stop" })
    if (result.kind !== "raw") throw new Error(`raw-js answered a ${result.kind} result`)
    const clean = result.failed === 0 && result.published === result.messages && result.consumed === result.messages && result.ackFloor === result.messages
    return {
      system: "raw-js",
      variant: "raw-js",
      round,
      clean,
      messages: result.messages,
      publishPerSec: (result.published * 1000) / Math.max(1e-3, result.publishMs),
      consumePerSec: (result.consumed * 1000) / Math.max(1e-3, result.consumeMs),
      raw: result,
      errors: result.errors
    }
  } finally {
    await group.killAll()
    await nats?.stop()
  }
}
