/**
 * Opening a read of the log for replay: an ephemeral consumer without acknowledgements (ack
 * policy none, state in memory, gone 30 s after the reader; `addReadConsumer`, as the event feed's)
 * filtered to the selection's subjects  and started at a sequence or an instant, then read
 * through the wire reader when it can be (see wire.ts) and through nats.js otherwise.
 *
 * Not through `EventFeed` itself: replay needs what its records drop — the log timestamp to the
 * nanosecond (a span's end) and the consumer's pending count (where the log ends for a filtered
 * selection, and the progress bar) — and its pace.
 */
import type { NatsConnection } from "nats"
import { eventsStream, type Naming } from "../../../streams/definitions.js"
import { PullSession } from "../pull.js"
import { addReadConsumer, type ReadStart } from "../streams.js"
import type { LogRecord } from "./records.js"
import { parseHeaderBlock } from "../rawHeaders.js"
import { makeRecord, type BodyPolicy, type HeaderPolicy } from "./records.js"
import { parseAck } from "../acks.js"
import { WireSource, WireUnsupported, type LogSource, type WireTarget } from "./wire.js"

/** How replay reaches the server: the nats.js connection, and where the wire reader may connect. */
export interface ReplayConnection {
  readonly nc: NatsConnection
  /** Omit to read through nats.js only. */
  readonly wire?: WireTarget
}

/** The server `nc` is connected to, with the credentials of the first URL that has any. */
export const wireTargetOf = (nc: NatsConnection, urls: ReadonlyArray<string>): WireTarget | undefined => {
  const server = nc.getServer()
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(server.replace(/^[a-z]+:\/\//i, ""))
  if (m?.[1] === undefined) return undefined
  let creds: { user?: string; pass?: string; token?: string } = {}
  for (const raw of urls) {
    try {
      const url = new URL(/^[a-z]+:\/\//i.test(raw) ? raw.replace(/^[a-z]+:/i, "http:") : `http://${raw}`)
      if (url.username === "") continue
      const user = decodeURIComponent(url.username)
      creds = url.password === "" ? { token: user } : { user, pass: decodeURIComponent(url.password) }
      break
    } catch {
      continue
    }
  }
  return { host: m[1], port: Number(m[2]), ...creds }
}

export interface OpenSpec {
  readonly filterSubject: string
  /** First sequence, or first instant, to read. */
  readonly start: ReadStart
  readonly batch: number
  readonly bodies: BodyPolicy
  /** What of the headers the records carry (default `spans`: all); the nats.js reader reads them all. */
  readonly headers?: HeaderPolicy
}

export interface OpenedSource {
  readonly source: LogSource
  /** Messages the consumer had to deliver when it was made. */
  readonly pendingAtStart: number
  /** Which reader reads it. */
  readonly reader: "wire" | "nats"
}

/** The nats.js reader: the shared pull session, records built from its deliveries. */
class NatsSource implements LogSource {
  private lastPending: number | undefined

  constructor(
    private readonly session: PullSession,
    private readonly bodies: BodyPolicy
  ) {}

  get pending(): number | undefined {
    return this.lastPending
  }

  async next(waitMs: number): Promise<ReadonlyArray<LogRecord>> {
    const deliveries = await this.session.take(Number.MAX_SAFE_INTEGER, waitMs)
    const out: Array<LogRecord> = []
    for (const d of deliveries) {
      const ack = parseAck(d.ackSubject)
      if (ack === undefined) continue
      out.push(makeRecord(d.seq, d.subject, ack.timeNs, parseHeaderBlock(d.headerBlock), d.data, this.bodies))
      this.lastPending = ack.pending
    }
    return out
  }

  async close(): Promise<void> {
    await this.session.stop(false)
  }
}

/** Makes the consumer and a reader for it; `close()` of the source leaves the consumer to expire. */
export const openSource = async (conn: ReplayConnection, naming: Naming, spec: OpenSpec): Promise<OpenedSource & { readonly remove: () => Promise<void> }> => {
  const stream = eventsStream(naming)
  const jsm = await conn.nc.jetstreamManager({ checkAPI: false })
  const info = await addReadConsumer(jsm, stream, spec.filterSubject, spec.start)
  const remove = () => jsm.consumers.delete(stream, info.name).then(() => undefined, () => undefined)
  const pull = { stream, consumer: info.name, batch: spec.batch, bodies: spec.bodies, headers: spec.headers ?? "spans" }
  if (conn.wire !== undefined) {
    try {
      const source = await WireSource.open(conn.wire, pull)
      return { source, pendingAtStart: info.num_pending, reader: "wire", remove }
    } catch (error) {
      if (!(error instanceof WireUnsupported) && !(error instanceof Error && "code" in error)) throw error
    }
  }
  const session = new PullSession(conn.nc, stream, info.name, { batch: spec.batch, expiresMs: 5_000 })
  return { source: new NatsSource(session, spec.bodies), pendingAtStart: info.num_pending, reader: "nats", remove }
}
