/**
 * Test helpers: a nats-server per test file, a fresh stream namespace per test, condition waits
 * with deadlines (never sleeps), and an in-memory span exporter on the real SDK.
 */
import { randomBytes } from "node:crypto"
import { afterAll, beforeAll } from "vitest"
import { connect, type NatsConnection } from "nats"
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace-base"
import { startNatsServer, type NatsServerHandle } from "../../src/testing/natsServer.js"
import { claimsStream, eventsStream, streamDefinitions, type Naming } from "../../streams/definitions.js"
import { provisionStreams } from "../../src/eventlog/provision.js"
import { DEFAULT_STREAM_SETTINGS } from "../../streams/definitions.js"
import type { BrokerConfig } from "../../src/config/config.js"
import { DEFAULT_WEBHOOK_SETTINGS, type WebhookSettings } from "../../src/webhooks/deliver.js"
import { createLogger } from "../../src/log/log.js"

/** Starts a nats-server before the file's tests and stops it after; returns an accessor. */
export const useNatsServer = (options: { ownServer?: boolean } = {}) => {
  let server: NatsServerHandle | undefined
  const connections: Array<NatsConnection> = []
  beforeAll(async () => {
    server = await startNatsServer(options)
  })
  afterAll(async () => {
    await Promise.allSettled(connections.map((nc) => nc.close()))
    await server?.stop()
  })
  const get = () => {
    if (server === undefined) throw new Error("nats-server not started")
    return server
  }
  return {
    server: get,
    url: () => get().url,
    /** A connection closed after the file's tests. */
    connect: async () => {
      const nc = await connect({ servers: get().url, noAsyncTraces: true })
      connections.push(nc)
      return nc
    }
  }
}

/** A stream namespace of its own, so tests never see each other's events. */
export const freshNaming = (): Naming => {
  const id = randomBytes(4).toString("hex")
  return { streamPrefix: `T${id.toUpperCase()}`, subjectRoot: `t${id}` }
}

export const provision = async (nc: NatsConnection, naming: Naming) => {
  await provisionStreams(nc, streamDefinitions(naming))
}

export const brokerConfig = (url: string, naming: Naming, webhooks: Partial<WebhookSettings> = {}): BrokerConfig => ({
  natsUrl: url,
  naming,
  streams: DEFAULT_STREAM_SETTINGS,
  // Tests deliver to receivers on loopback.
  webhooks: { ...DEFAULT_WEBHOOK_SETTINGS, allowPrivateNetworks: true, ...webhooks },
  tracing: {}
})

/** A logger that writes nothing, for code under test that needs one. */
export const quietLogger = createLogger({ level: "silent", destination: { write: () => undefined } })

const STILL_CHECKING = Symbol("still checking")

/**
 * Polls `check` until it returns a value other than undefined/false, or fails at the deadline —
 * also when a check is still running then, so a call that never answers fails naming `what`.
 */
export const waitFor = async <T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  { timeoutMs = 20_000, intervalMs = 25, what = "condition" }: { timeoutMs?: number; intervalMs?: number; what?: string } = {}
): Promise<T> => {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    let expiry: NodeJS.Timeout | undefined
    const expired = new Promise<typeof STILL_CHECKING>((resolve) => {
      expiry = setTimeout(() => resolve(STILL_CHECKING), Math.max(0, deadline - Date.now()))
    })
    let value: Awaited<ReturnType<typeof check>> | typeof STILL_CHECKING = undefined
    try {
      value = await Promise.race([Promise.resolve().then(check), expired])
    } catch (error) {
      last = error
    } finally {
      clearTimeout(expiry)
    }
    if (value === STILL_CHECKING) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: a check was still running`)
    if (value !== undefined && value !== false) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

/**
 * True once the broker's projections (all, or the named ones) have finished every event the log
 * held when asked: effects settled, coalesced writes made. The leader is asked to make its
 * coalesced writes first, as readers of the read model do (a task still going is otherwise
 * written only after tens of seconds).
 */
export const projectionsCaughtUp = async (
  broker: { readonly projections: { positions(): Promise<ReadonlyMap<string, number>>; flush?(): Promise<boolean> } },
  nc: NatsConnection,
  naming: Naming,
  names?: ReadonlyArray<string>
): Promise<boolean> => {
  const last = await eventCountLastSeq(nc, naming)
  await broker.projections.flush?.()
  const positions = await broker.projections.positions()
  const wanted = names ?? [...positions.keys()]
  return wanted.length > 0 && wanted.every((name) => (positions.get(name) ?? 0) >= last)
}

const eventCountLastSeq = async (nc: NatsConnection, naming: Naming): Promise<number> =>
  (await (await nc.jetstreamManager()).streams.info(eventsStream(naming))).state.last_seq

export const streamMessages = async (nc: NatsConnection, stream: string): Promise<number> =>
  (await (await nc.jetstreamManager()).streams.info(stream)).state.messages

export const eventCount = (nc: NatsConnection, naming: Naming) => streamMessages(nc, eventsStream(naming))
export const claimCount = (nc: NatsConnection, naming: Naming) => streamMessages(nc, claimsStream(naming))

/** A real SDK tracer provider recording every ended span in memory. */
export const recordSpans = () => {
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  return {
    provider,
    spans: (): ReadonlyArray<ReadableSpan> => exporter.getFinishedSpans(),
    reset: () => exporter.reset()
  }
}
