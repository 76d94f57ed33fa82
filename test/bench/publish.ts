/**
 * `npm run bench -- publish`: the client CPU a publish costs through the outbox, written as protocol
 * frames (src/eventlog/frames.ts), against the same bursts sent message by message through
 * nats.js's `publish` (what the outbox did before). Event-like messages: codeq's event headers, a
 * ~300-byte body, a reply subject, as a worker's appends are, in bursts of one event-loop turn.
 * Rounds alternate the two ways on one private nats-server; every round must reach the server
 * whole (its `/varz` counts the messages in), or the bench fails.
 */
import { connect, type NatsConnection } from "nats"
import { freePort, startNatsServer } from "../../src/testing/natsServer.js"
import { publishSoon } from "../../src/eventlog/outbox.js"
import { WireHeaders } from "../../src/eventlog/wireHeaders.js"
import { median } from "./stats.js"

interface Options {
  readonly messages: number
  readonly burst: number
  readonly rounds: number
}

const USAGE = `usage: npm run bench -- publish [--messages N] [--burst N] [--rounds N]
  --messages N  publishes a round (default 200000)
  --burst N     publishes a turn of the event loop (default 16)
  --rounds N    alternated rounds of each way, after a warm-up (default 5)`

const parse = (argv: ReadonlyArray<string>): Options => {
  const value = (name: string, fallback: number, max: number): number => {
    const i = argv.indexOf(`--${name}`)
    if (i === -1) return fallback
    const n = Number(argv[i + 1])
    if (!Number.isInteger(n) || n < 1 || n > max) throw new Error(`--${name} must be an integer from 1 to ${max}, got ${String(argv[i + 1])}`)
    return n
  }
  return { messages: value("messages", 200_000, 10_000_000), burst: value("burst", 16, 4096), rounds: value("rounds", 5, 50) }
}

const BODY = Buffer.from(JSON.stringify({ v: 1, type: "TaskClaimed", tenant: "bench", taskId: "0b6f6a1e-8f5c-4a59-9d7e-0123456789ab", at: new Date(0).toISOString(), workerId: "worker-1", leaseUntil: new Date(0).toISOString(), leaseHandle: "0123456789abcdef", attempt: 1, pad: "x".repeat(90) }))
const SUBJECT = "bench.evt.bench.0b6f6a1e-8f5c-4a59-9d7e-0123456789ab"

const eventHeaders = (seq: number): WireHeaders => {
  const h = new WireHeaders()
  h.set("Codeq-Event", "TaskClaimed")
  h.set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
  h.set("Codeq-Parent-Span", "b7ad6b7169203331")
  h.set("Codeq-Span-Start", "1700000000000000000")
  h.set("Codeq-Span-End", "1700000000000100000")
  h.set("Nats-Expected-Stream", "BENCH_EVENTS")
  h.set("Nats-Expected-Last-Subject-Sequence", String(seq))
  h.set("Codeq-Prev-Seq", String(seq))
  return h
}

type Way = "nats.js publish" | "outbox frames"

/** Sends `messages` in bursts of `burst` a turn; the client CPU it took, in µs a message. */
const round = async (nc: NatsConnection, way: Way, { messages, burst }: Options): Promise<number> => {
  const before = process.cpuUsage()
  let sent = 0
  await new Promise<void>((resolve) => {
    const turn = () => {
      for (let k = 0; k < burst && sent < messages; k++, sent++) {
        const options = { reply: `_INBOX.bench.${sent}`, headers: eventHeaders(sent) }
        if (way === "outbox frames") publishSoon(nc, SUBJECT, BODY, options)
        else nc.publish(SUBJECT, BODY, options)
      }
      if (sent < messages) setImmediate(turn)
      else setImmediate(resolve)
    }
    turn()
  })
  await nc.flush()
  const used = process.cpuUsage(before)
  return (used.user + used.system) / messages
}

const inMsgs = async (monitor: number): Promise<number> => ((await (await fetch(`http://127.0.0.1:${monitor}/varz`)).json()) as { in_msgs: number }).in_msgs

export const runPublishBench = async (argv: ReadonlyArray<string>): Promise<number> => {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(USAGE)
    return 0
  }
  let options: Options
  try {
    options = parse(argv)
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`)
    return 1
  }
  const monitor = await freePort()
  const server = await startNatsServer({ ownServer: true, args: ["-m", String(monitor)] })
  const nc = await connect({ servers: server.url, noAsyncTraces: true })
  try {
    const results: Record<Way, Array<number>> = { "nats.js publish": [], "outbox frames": [] }
    // A first round of each warms both paths up; it is not counted.
    for (let r = 0; r <= options.rounds; r++)
      for (const way of r % 2 === 0 ? (["nats.js publish", "outbox frames"] as const) : (["outbox frames", "nats.js publish"] as const)) {
        const from = await inMsgs(monitor)
        const us = await round(nc, way, r === 0 ? { ...options, messages: Math.min(options.messages, 20_000) } : options)
        const arrived = (await inMsgs(monitor)) - from
        const expected = r === 0 ? Math.min(options.messages, 20_000) : options.messages
        if (arrived !== expected) throw new Error(`${way}: the server counted ${arrived} messages in, ${expected} were sent`)
        if (r > 0) results[way].push(us)
      }
    console.log(`publish: ${options.rounds} alternated rounds of ${options.messages} event-like publishes (headers, ~${BODY.length}-byte body, a reply), ${options.burst} a turn`)
    for (const [way, values] of Object.entries(results))
      console.log(`${way.padEnd(16)} client CPU µs a publish: median ${median(values)?.toFixed(2)} (${Math.min(...values).toFixed(2)}–${Math.max(...values).toFixed(2)})`)
    const [theirs, ours] = [median(results["nats.js publish"]) ?? 0, median(results["outbox frames"]) ?? 0]
    console.log(`outbox frames / nats.js publish: ${(ours / theirs).toFixed(2)}×; lower in ${results["outbox frames"].filter((v, i) => v < (results["nats.js publish"][i] ?? 0)).length} of ${options.rounds} rounds`)
    return 0
  } finally {
    await nc.close()
    await server.stop()
  }
}
