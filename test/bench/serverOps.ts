/**
 * `npm run bench -- server-ops`: what each kind of operation a task causes costs the nats-server,
 * in CPU per operation, on codeq's own streams (streams/definitions.ts) in a private server. The
 * e2e benchmark counts the server's messages per task by connection; this one says which of them
 * weigh what: an append to the log, the claim message, its delivery and ack, the read model's
 * document, the projections' feed.
 *
 * Each kind runs `--ops` operations with 64 in flight, in `--rounds` interleaved rounds; the
 * server's CPU comes from /proc/<pid>/stat (user + system, in clock ticks of 10 ms, so 20,000
 * operations resolve 0.5 µs each). Linux only.
 */
import { parseArgs } from "node:util"
import { AckPolicy, DeliverPolicy, connect, headers, type JetStreamClient, type NatsConnection } from "nats"
import { startNatsServer } from "../../src/testing/natsServer.js"
import { provisionStreams } from "../../src/eventlog/provision.js"
import { claimSubject, claimsStream, eventSubject, eventsStream, streamDefinitions, taskStateBucket, type Naming } from "../../streams/definitions.js"
import { processCpuSeconds } from "./e2e/cpu.js"
import { integer } from "./e2e/options.js"
import { median } from "./stats.js"

/** The server's CPU time so far, in µs; throws when it cannot be read (not Linux, or the server is gone). */
const serverCpuUs = async (pid: number): Promise<number> => {
  const seconds = await processCpuSeconds(pid)
  if (seconds === undefined) throw new Error(`cannot read the nats-server's CPU time from /proc/${pid}/stat`)
  return seconds * 1e6
}

/** A TaskCreated-sized body (~360 bytes, a 200-byte payload) and the headers every event carries. */
const BODY = new TextEncoder().encode(JSON.stringify({ type: "TaskCreated", taskId: "x".repeat(36), tenant: "bench", command: "noop", payload: "p".repeat(200), priority: 5, at: new Date().toISOString() }))
const eventHeaders = (expected: number) => {
  const h = headers()
  h.set("Codeq-Event", "TaskCreated")
  h.set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
  h.set("Nats-Expected-Last-Subject-Sequence", String(expected))
  return h
}

/** Runs `op(i)` for i < n with `inFlight` at once. */
const pipelined = async (n: number, inFlight: number, op: (i: number) => Promise<unknown>): Promise<void> => {
  let next = 0
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < n) await op(next++)
    })
  )
}

interface Kind {
  readonly name: string
  /** How many of these one task causes in a plain create → claim → complete. */
  readonly perTask: number
  readonly run: (n: number, round: number) => Promise<void>
}

const kinds = (nc: NatsConnection, js: JetStreamClient, naming: Naming): ReadonlyArray<Kind> => [
  {
    name: "core publish, nothing stored (baseline)",
    perTask: 0,
    run: async (n) => {
      for (let i = 0; i < n; i++) nc.publish("bench.core", BODY)
      await nc.flush()
    }
  },
  {
    name: "event append with its ack (new task subject, expected sequence)",
    perTask: 3,
    run: (n, round) => pipelined(n, 64, (i) => js.publish(eventSubject(naming, "bench", `r${round}-${i}`), BODY, { headers: eventHeaders(0) }))
  },
  {
    name: "claim message with its ack (message id, work queue)",
    perTask: 1,
    run: (n, round) => pipelined(n, 64, (i) => js.publish(claimSubject(naming, "bench", "noop", 5), BODY, { msgID: `r${round}-${i}` }))
  },
  {
    name: "claim delivery to a worker and its ack (work queue removes it)",
    perTask: 1,
    run: async (n, round) => {
      const jsm = await nc.jetstreamManager()
      const durable = `bench-${round}`
      await jsm.consumers.add(claimsStream(naming), { durable_name: durable, ack_policy: AckPolicy.Explicit, filter_subject: claimSubject(naming, "bench", "noop", 5) })
      const messages = await (await js.consumers.get(claimsStream(naming), durable)).consume({ max_messages: 256 })
      let acked = 0
      for await (const m of messages) {
        m.ack()
        if (++acked >= n) break
      }
      await nc.flush()
      await jsm.consumers.delete(claimsStream(naming), durable)
    }
  },
  {
    name: "read-model document put with its ack (new key)",
    perTask: 1,
    run: async (n, round) => {
      const kv = await js.views.kv(taskStateBucket(naming))
      await pipelined(n, 64, (i) => kv.put(`bench.r${round}-${i}`, BODY))
    }
  },
  {
    name: "event delivered to the projections' feed (no ack)",
    perTask: 3,
    run: async (n, round) => {
      const jsm = await nc.jetstreamManager()
      const info = await jsm.consumers.add(eventsStream(naming), { ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: 1 + (round - 1) * n, mem_storage: true })
      const messages = await (await js.consumers.get(eventsStream(naming), info.name)).consume({ max_messages: 1_000 })
      let read = 0
      for await (const _ of messages) if (++read >= n) break
      await jsm.consumers.delete(eventsStream(naming), info.name)
    }
  }
]

export const runServerOps = async (argv: ReadonlyArray<string>): Promise<number> => {
  const { values } = parseArgs({ args: [...argv], strict: true, allowPositionals: false, options: { ops: { type: "string" }, rounds: { type: "string" }, help: { type: "boolean", short: "h" } } })
  if (values.help === true) {
    console.log("usage: npm run bench -- server-ops [--ops N (20,000; 1 to 1,000,000)] [--rounds R (3; 1 to 100)]")
    return 0
  }
  const ops = integer("ops", values.ops, 20_000, 1, 1_000_000)
  const rounds = integer("rounds", values.rounds, 3, 1, 100)
  const server = await startNatsServer({ ownServer: true })
  const pid = server.pid
  if (pid === undefined) throw new Error("server-ops needs a nats-server of its own (its CPU is read from /proc)")
  const nc = await connect({ servers: server.url })
  try {
    const naming: Naming = { streamPrefix: "BENCHOPS", subjectRoot: "benchops" }
    await provisionStreams(nc, streamDefinitions(naming))
    const js = nc.jetstream()
    await js.views.kv(taskStateBucket(naming))
    const list = kinds(nc, js, naming)
    const cost = list.map((): Array<number> => [])
    for (let round = 1; round <= rounds; round++)
      for (const [i, kind] of list.entries()) {
        // Let the server's background work of the last kind settle before reading its clock.
        await new Promise((resolve) => setTimeout(resolve, 300))
        const before = await serverCpuUs(pid)
        await kind.run(ops, round)
        await nc.flush()
        await new Promise((resolve) => setTimeout(resolve, 300))
        cost[i]?.push(((await serverCpuUs(pid)) - before) / ops)
      }
    console.log(`nats-server CPU per operation, ${rounds} round(s) of ${ops.toLocaleString("en-US")} operations each, 64 in flight (median, min–max):`)
    let perTask = 0
    for (const [i, kind] of list.entries()) {
      const us = cost[i] ?? []
      const m = median(us) ?? 0
      perTask += m * kind.perTask
      console.log(`  ${kind.name.padEnd(66)} ${m.toFixed(1).padStart(5)} µs   ${Math.min(...us).toFixed(1)}–${Math.max(...us).toFixed(1)}   × ${kind.perTask} per task`)
    }
    console.log(`  a task's operations, summed (create, claim and complete; no barrier, pulls or webhook): ${perTask.toFixed(0)} µs`)
    return 0
  } finally {
    await nc.close()
    await server.stop()
  }
}
