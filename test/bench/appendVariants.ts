/**
 * The four ways of appending to JetStream that the append benchmark compares (DESIGN §9):
 *   a   PipelinedPublisher.publish, `inflight` outstanding, no expected sequence: raw append rate;
 *   a2  JetStreamEventLog.append of a real TaskCreated (one subject per task, expected last subject
 *       sequence 0, trace and Codeq-Event headers): what a create costs in the event log;
 *   b   nats.js `js.publish` with the same number of promises in flight: the client's own path;
 *   c   `js.publish` awaited one by one: the floor.
 * Each variant has its own connection (noAsyncTraces: true) kept across runs, so connecting is
 * never timed, and each run appends to a fresh subject of a stream the caller purges in between.
 */
import { randomBytes, randomUUID } from "node:crypto"
import { connect, headers, type JetStreamClient, type NatsConnection } from "nats"
import { eventSubject, type Naming } from "../../streams/definitions.js"
import { EVENT_SCHEMA_VERSION, type EventOf, type EventTrace } from "../../src/domain/events.js"
import { encodeEvent } from "../../src/eventlog/codec.js"
import { JetStreamEventLog } from "../../src/eventlog/jetstream.js"
import { PipelinedPublisher } from "../../src/eventlog/pipeline.js"
import { spanStartNow } from "../../src/tracing/codec.js"
import { ErrorSample, type RunResult } from "./stats.js"

export type VariantId = "a" | "a2" | "b" | "c"

export interface AppendSettings {
  readonly url: string
  readonly naming: Naming
  /** Message body size in bytes (for a2: the TaskCreated JSON body, padded to this size). */
  readonly size: number
  /** Messages per run for a, a2 and b. */
  readonly count: number
  /** Messages per run for c. */
  readonly serialCount: number
  readonly inflight: number
  readonly ackTimeoutMs: number
}

/** A run before the caller has looked at the stream. */
export type TimedRun = Omit<RunResult, "stored">

export interface Variant {
  readonly id: VariantId
  readonly label: string
  /** Messages per measured run. */
  readonly count: number
  /** Appends `count` messages to fresh subjects tagged `tag`. */
  run(tag: string, count: number): Promise<TimedRun>
  close(): Promise<void>
}

/** One append: undefined when acked, otherwise what went wrong. */
type AppendOne = (index: number) => Promise<string | undefined>

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error))

/** Appends `count` messages with at most `inflight` outstanding (a sliding window of workers). */
export const runWindowed = async (count: number, inflight: number, one: AppendOne): Promise<TimedRun> => {
  let next = 0
  let acked = 0
  let failed = 0
  const errors = new ErrorSample()
  const worker = async (): Promise<void> => {
    while (next < count) {
      const index = next++
      let error: string | undefined
      try {
        error = await one(index)
      } catch (cause) {
        error = describe(cause)
      }
      if (error === undefined) acked++
      else {
        failed++
        errors.add(error)
      }
    }
  }
  const start = performance.now()
  await Promise.all(Array.from({ length: Math.max(1, Math.min(inflight, count)) }, worker))
  return { attempted: count, acked, failed, elapsedMs: performance.now() - start, errors: errors.messages }
}

const connectFor = (url: string, variant: VariantId): Promise<NatsConnection> =>
  connect({ servers: url, name: `codeq-bench-append-${variant}`, noAsyncTraces: true })

/** A TaskCreated as the scheduler writes it, its payload padded so the JSON body is `size` bytes. */
const taskCreatedFactory = (size: number) => {
  const event = (taskId: string, pad: string): EventOf<"TaskCreated"> => ({
    v: EVENT_SCHEMA_VERSION,
    type: "TaskCreated",
    taskId,
    tenant: "bench",
    at: new Date().toISOString(),
    command: "bench.noop",
    payload: { pad },
    priority: 5,
    maxAttempts: 3
  })
  const bare = encodeEvent(event(randomUUID(), "")).length
  const pad = "x".repeat(Math.max(0, size - bare))
  return { bodySize: Math.max(size, bare), make: (taskId: string) => event(taskId, pad) }
}

/** A fresh root-span trace per task, as a create span leaves on its event. */
const freshTrace = (): EventTrace => {
  const hex = randomBytes(32).toString("hex")
  return {
    traceparent: `00-${hex.slice(0, 32)}-${hex.slice(32, 48)}-01`,
    tracestate: undefined,
    parentSpanId: hex.slice(48, 64),
    spanStart: spanStartNow().nanos
  }
}

/** Builds the variants in table order; each owns one connection. Closes what it opened on failure. */
export const createVariants = async (s: AppendSettings): Promise<ReadonlyArray<Variant>> => {
  const opened: Array<Variant> = []
  try {
    for (const build of [variantA, variantA2, variantB, variantC]) opened.push(await build(s))
    return opened
  } catch (error) {
    await Promise.allSettled(opened.map((variant) => variant.close()))
    throw error
  }
}

const rawBody = (s: AppendSettings) => new Uint8Array(s.size).fill(0x61)
const rawSubject = (s: AppendSettings, variant: VariantId, tag: string) =>
  eventSubject(s.naming, "bench", `${variant}-${tag}`)

const variantA = async (s: AppendSettings): Promise<Variant> => {
  const body = rawBody(s)
  const ncA = await connectFor(s.url, "a")
  const publisher = new PipelinedPublisher(ncA, { maxInFlight: s.inflight, ackTimeoutMs: s.ackTimeoutMs })
  return {
    id: "a",
    label: `PipelinedPublisher.publish, ${s.inflight} in flight, no expected seq`,
    count: s.count,
    run: (tag, count) => {
      const subject = rawSubject(s, "a", tag)
      return runWindowed(count, s.inflight, async () => {
        const result = await publisher.publish(subject, body, headers())
        return result.ok ? undefined : result.error.message
      })
    },
    close: async () => {
      publisher.close()
      await ncA.close()
    }
  }
}

const variantA2 = async (s: AppendSettings): Promise<Variant> => {
  const ncA2 = await connectFor(s.url, "a2")
  const log = JetStreamEventLog.connect(ncA2, s.naming, { maxInFlight: s.inflight, ackTimeoutMs: s.ackTimeoutMs })
  const created = taskCreatedFactory(s.size)
  return {
    id: "a2",
    label: `JetStreamEventLog.append, ${s.inflight} in flight, TaskCreated ${created.bodySize} B, seq 0`,
    count: s.count,
    run: (_tag, count) =>
      runWindowed(count, s.inflight, async () => {
        const taskId = randomUUID()
        const result = await log.append({
          tenant: "bench",
          taskId,
          event: created.make(taskId),
          trace: freshTrace(),
          expectedSeq: 0
        })
        return result.ok ? undefined : result.error.message
      }),
    close: async () => {
      log.close()
      await ncA2.close()
    }
  }
}

const variantB = async (s: AppendSettings): Promise<Variant> => {
  const body = rawBody(s)
  const ncB = await connectFor(s.url, "b")
  const jsB: JetStreamClient = ncB.jetstream({ timeout: s.ackTimeoutMs })
  return {
    id: "b",
    label: `js.publish, ${s.inflight} in flight`,
    count: s.count,
    run: (tag, count) => {
      const subject = rawSubject(s, "b", tag)
      return runWindowed(count, s.inflight, async () => {
        await jsB.publish(subject, body)
        return undefined
      })
    },
    close: () => ncB.close()
  }
}

const variantC = async (s: AppendSettings): Promise<Variant> => {
  const body = rawBody(s)
  const ncC = await connectFor(s.url, "c")
  const jsC: JetStreamClient = ncC.jetstream({ timeout: s.ackTimeoutMs })
  return {
    id: "c",
    label: "js.publish, awaited one by one",
    count: s.serialCount,
    run: (tag, count) => {
      const subject = rawSubject(s, "c", tag)
      return runWindowed(count, 1, async () => {
        await jsC.publish(subject, body)
        return undefined
      })
    },
    close: () => ncC.close()
  }
}
