/**
 * What the bench reads from the outside while codeq runs: the nats-server's own counters
 * (`/varz` totals and `/connz?state=all` per named connection, closed ones included, so a
 * producer that has exited still counts) and the broker's `GET /metrics`, whose
 * `codeq_projection_lag_events{projection}` series say how far each projection is behind the log.
 */

/** Client messages and bytes as nats-server counts them: in = from clients, out = to clients. */
export interface Counters {
  readonly inMsgs: number
  readonly outMsgs: number
  readonly inBytes: number
  readonly outBytes: number
}

export interface ServerSnapshot {
  readonly at: number
  readonly total: Counters
  /** By connection id; the name is what the client passed to `connect`. */
  readonly connections: ReadonlyMap<number, { readonly name: string; readonly counters: Counters }>
}

/** Per task, from two snapshots. */
export interface Traffic {
  /** (in + out) messages per task. */
  readonly msgsPerTask: number
  readonly inPerTask: number
  readonly outPerTask: number
  /** (in + out) bytes per task. */
  readonly bytesPerTask: number
  readonly outBytesPerTask: number
  /** The same, per connection name (several connections of one name are added up). */
  readonly byConnection: Readonly<Record<string, { readonly msgsPerTask: number; readonly inPerTask: number; readonly outPerTask: number; readonly bytesPerTask: number }>>
}

interface WireCounters {
  readonly in_msgs?: number
  readonly out_msgs?: number
  readonly in_bytes?: number
  readonly out_bytes?: number
}

const counters = (wire: WireCounters): Counters => ({
  inMsgs: wire.in_msgs ?? 0,
  outMsgs: wire.out_msgs ?? 0,
  inBytes: wire.in_bytes ?? 0,
  outBytes: wire.out_bytes ?? 0
})

const ZERO: Counters = { inMsgs: 0, outMsgs: 0, inBytes: 0, outBytes: 0 }
const minus = (a: Counters, b: Counters): Counters => ({
  inMsgs: a.inMsgs - b.inMsgs,
  outMsgs: a.outMsgs - b.outMsgs,
  inBytes: a.inBytes - b.inBytes,
  outBytes: a.outBytes - b.outBytes
})
const plus = (a: Counters, b: Counters): Counters => minus(a, minus(ZERO, b))

const getJson = async (url: string): Promise<unknown> => {
  const response = await fetch(url)
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`)
  return response.json()
}

/** Reads `/varz` and `/connz?state=all` of the server's monitoring port. */
export const serverSnapshot = async (monitorUrl: string): Promise<ServerSnapshot> => {
  const [varz, connz] = await Promise.all([
    getJson(`${monitorUrl}/varz`) as Promise<WireCounters>,
    getJson(`${monitorUrl}/connz?state=all&limit=100000`) as Promise<{ connections?: ReadonlyArray<WireCounters & { cid: number; name?: string }> }>
  ])
  const connections = new Map<number, { name: string; counters: Counters }>()
  for (const conn of connz.connections ?? []) connections.set(conn.cid, { name: conn.name === undefined || conn.name === "" ? "(unnamed)" : conn.name, counters: counters(conn) })
  return { at: Date.now(), total: counters(varz), connections }
}

/** Counters that moved between two snapshots, in total and by connection name. */
export const delta = (before: ServerSnapshot, after: ServerSnapshot): { readonly total: Counters; readonly byName: ReadonlyMap<string, Counters> } => {
  const byName = new Map<string, Counters>()
  for (const [cid, conn] of after.connections) {
    const moved = minus(conn.counters, before.connections.get(cid)?.counters ?? ZERO)
    byName.set(conn.name, plus(byName.get(conn.name) ?? ZERO, moved))
  }
  return { total: minus(after.total, before.total), byName }
}

/**
 * Traffic per task between two snapshots. `exclude` names connections that are the bench's own
 * (taken out of the total too); `deduct` takes a known amount of messages off one connection
 * (the broker's answers to the bench's own `/metrics` scrapes).
 */
export const trafficPerTask = (
  before: ServerSnapshot,
  after: ServerSnapshot,
  tasks: number,
  exclude: ReadonlyArray<string> = [],
  deduct: { readonly name: string; readonly counters: Counters } | undefined = undefined
): Traffic => {
  const moved = delta(before, after)
  let total = moved.total
  const byConnection: Record<string, Traffic["byConnection"][string]> = {}
  for (const [name, value] of moved.byName) {
    let own = value
    if (exclude.includes(name)) {
      total = minus(total, own)
      continue
    }
    if (deduct !== undefined && deduct.name === name) {
      own = minus(own, deduct.counters)
      total = minus(total, deduct.counters)
    }
    byConnection[name] = {
      msgsPerTask: (own.inMsgs + own.outMsgs) / tasks,
      inPerTask: own.inMsgs / tasks,
      outPerTask: own.outMsgs / tasks,
      bytesPerTask: (own.inBytes + own.outBytes) / tasks
    }
  }
  return {
    msgsPerTask: (total.inMsgs + total.outMsgs) / tasks,
    inPerTask: total.inMsgs / tasks,
    outPerTask: total.outMsgs / tasks,
    bytesPerTask: (total.inBytes + total.outBytes) / tasks,
    outBytesPerTask: total.outBytes / tasks,
    byConnection
  }
}

/** Scales counters (the cost of one scrape times the number of scrapes). */
export const scaled = (value: Counters, factor: number): Counters => ({
  inMsgs: Math.round(value.inMsgs * factor),
  outMsgs: Math.round(value.outMsgs * factor),
  inBytes: Math.round(value.inBytes * factor),
  outBytes: Math.round(value.outBytes * factor)
})

const LAG_LINE = /^codeq_projection_lag_events\{[^}]*projection="([^"]+)"[^}]*\}\s+(\S+)/

/** The projection lag series of the broker's `/metrics`, by projection. */
export const projectionLag = async (httpUrl: string): Promise<ReadonlyMap<string, number>> => {
  const response = await fetch(`${httpUrl}/metrics`)
  if (!response.ok) throw new Error(`GET /metrics: HTTP ${response.status}`)
  const lag = new Map<string, number>()
  for (const line of (await response.text()).split("\n")) {
    const match = LAG_LINE.exec(line)
    if (match?.[1] !== undefined) lag.set(match[1], Number(match[2]))
  }
  return lag
}

export interface CatchUp {
  /** Wall time at which every lag series read 0; undefined when the deadline came first. */
  readonly caughtUpAt: number | undefined
  readonly scrapes: number
  /** The first lag read after the last completion, by projection. */
  readonly firstLag: Readonly<Record<string, number>>
  /** The last lag read, by projection. */
  readonly lastLag: Readonly<Record<string, number>>
  readonly error: string | undefined
}

/**
 * Polls `/metrics` every `pollMs` until every lag series is 0 or `deadlineAt` (wall time) passes.
 * `control.scrapes` counts the scrapes as they happen (each one costs the broker a few JetStream
 * API requests, which the caller takes off the broker's traffic); `control.cancelled` ends the
 * wait early (the run failed and the broker is going away).
 */
export const waitForCatchUp = async (
  httpUrl: string,
  pollMs: number,
  deadlineAt: number,
  control: { scrapes: number; cancelled?: boolean } = { scrapes: 0 }
): Promise<CatchUp> => {
  let scrapes = 0
  let firstLag: Record<string, number> | undefined
  let lastLag: Record<string, number> = {}
  let error: string | undefined
  for (;;) {
    const started = Date.now()
    try {
      const lag = await projectionLag(httpUrl)
      scrapes++
      control.scrapes++
      lastLag = Object.fromEntries(lag)
      firstLag ??= lastLag
      error = lag.size === 0 ? "no codeq_projection_lag_events series in /metrics" : undefined
      if (lag.size > 0 && [...lag.values()].every((n) => n === 0)) return { caughtUpAt: Date.now(), scrapes, firstLag: firstLag ?? {}, lastLag, error }
    } catch (cause) {
      error = cause instanceof Error ? cause.message : String(cause)
    }
    if (Date.now() >= deadlineAt || control.cancelled === true) return { caughtUpAt: undefined, scrapes, firstLag: firstLag ?? {}, lastLag, error }
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, pollMs - (Date.now() - started))))
  }
}
