/**
 * The NATS connection: opening it (the one place codeq connects), its state as its status events
 * tell it, and closing it without hanging: a drain needs the server, so with the server gone a
 * connection is closed at once. Outside `src/eventlog` a connection is a handle passed back in.
 */
import { ErrorCode, connect, type NatsConnection, type Status } from "nats"
import type { Logger } from "../log/log.js"

/** An open connection to NATS; everything that speaks JetStream over it lives in `src/eventlog`. */
export type Connection = NatsConnection

export interface OpenOptions {
  /** One URL, or several of one cluster. */
  readonly servers: string | ReadonlyArray<string>
  /** The name the server shows for this client. */
  readonly name?: string
  /** How long the first connect may take (nats.js's default otherwise). */
  readonly timeoutMs?: number
}

/**
 * How long to wait before trying a server again after it refused or dropped the connection.
 * nats.js waits 2 s; a broker then answered 503 for up to 2 s after its server was back. A refused
 * attempt costs a TCP handshake, and the client's jitter (100 ms) spreads reconnecting clients.
 */
export const RECONNECT_WAIT_MS = 500

/** Connects, reconnecting for ever once connected (a broker outlives server restarts). */
export const openConnection = (options: OpenOptions): Promise<Connection> =>
  connect({
    servers: typeof options.servers === "string" ? options.servers : [...options.servers],
    noAsyncTraces: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: RECONNECT_WAIT_MS,
    ...(options.name !== undefined ? { name: options.name } : {}),
    ...(options.timeoutMs !== undefined ? { timeout: options.timeoutMs } : {})
  })

/** Rejects when the server does not run JetStream (see `isJetStreamDisabled`) or does not answer. */
export const checkJetStream = async (conn: Connection, timeoutMs?: number): Promise<void> => {
  await conn.jetstreamManager(timeoutMs === undefined ? {} : { timeout: timeoutMs })
}

/**
 * Calls `wake` on every message published on `subject` (a task's events, say) until the returned
 * function is called. Core NATS: nothing is stored, a message sent while nobody listens is gone.
 */
export const wakeOnSubject = (conn: Connection, subject: string, wake: () => void): (() => void) => {
  const sub = conn.subscribe(subject, { callback: () => wake() })
  return () => sub.unsubscribe()
}

/** Answers every request on `subject` for as long as the connection lives; the function stops it. */
export const answerPresence = (conn: Connection, subject: string): (() => void) => {
  const sub = conn.subscribe(subject, { callback: (_err, msg) => msg.respond() })
  return () => sub.unsubscribe()
}

/**
 * Answers every request on `subject` once `work` has settled (fulfilled or not: the asker only
 * waits for it), until the returned function is called. The request's data is ignored.
 */
export const answerAfter = (conn: Connection, subject: string, work: () => Promise<unknown>): (() => void) => {
  const sub = conn.subscribe(subject, {
    callback: (err, msg) => {
      // An error (a permission refused) comes without a request to answer.
      if (err !== null) return
      const answer = () => void msg.respond()
      work().then(answer, answer)
    }
  })
  return () => sub.unsubscribe()
}

/**
 * Asks on `subject` and waits for the answer, at most `timeoutMs`: true when it came. Nobody
 * answering, a refusal (permissions), a timeout or a closed connection give false, never a throw.
 */
export const askAndWait = async (conn: Connection, subject: string, timeoutMs: number): Promise<boolean> => {
  try {
    await conn.request(subject, undefined, { timeout: timeoutMs })
    return true
  } catch {
    return false
  }
}

/**
 * Whether nobody answers on `subject` any more: the server says "no responders" the moment the
 * answering connection is gone. A slow answer is not absence.
 */
export const isAbsent = async (conn: Connection, subject: string, timeoutMs = 1_000): Promise<boolean> => {
  try {
    await conn.request(subject, undefined, { timeout: timeoutMs })
    return false
  } catch (error) {
    return (error as { code?: string }).code === ErrorCode.NoResponders
  }
}

export interface ConnectionWatchOptions {
  /**
   * Where the changes of state go: one warn line when the connection drops, one info line when it
   * is back (the client's repeated reconnect attempts in between are not logged). Give it to one
   * watch per connection — the broker's — so each change is logged once.
   */
  readonly log?: Logger
}

/** The server of a status event, without any credentials a URL might carry. */
const serverOf = (status: Status): string | undefined =>
  typeof status.data === "string" && status.data !== "" ? status.data.replace(/^.*@/, "") : undefined

/** Follows the connection's status events: down from a disconnect until the reconnect. */
export class ConnectionWatch {
  private up = true
  private stopped = false
  private readonly log: Logger | undefined

  constructor(
    private readonly nc: NatsConnection,
    options: ConnectionWatchOptions = {}
  ) {
    this.log = options.log
    void this.follow()
  }

  get connected(): boolean {
    return this.up && !this.nc.isClosed()
  }

  stop(): void {
    this.stopped = true
  }

  private async follow(): Promise<void> {
    try {
      for await (const status of this.nc.status()) {
        if (this.stopped) return
        if (status.type === "disconnect") {
          if (this.up) this.report("warn", status, "NATS disconnected; reconnecting")
          this.up = false
        } else if (status.type === "reconnect") {
          if (!this.up) this.report("info", status, "NATS reconnected")
          this.up = true
        }
      }
    } catch {
      // The iterator ends when the connection closes; `connected` then reads isClosed().
    }
  }

  private report(level: "warn" | "info", status: Status, msg: string): void {
    try {
      const server = serverOf(status)
      this.log?.[level](server === undefined ? {} : { server }, msg)
    } catch {
      // A logger never breaks the watch.
    }
  }
}

/** Drains the connection (bounded by `timeoutMs`) when the server is there; else closes it at once. */
export const closeConnection = async (nc: NatsConnection, connected: boolean, timeoutMs = 2_000): Promise<void> => {
  if (nc.isClosed()) return
  if (connected) {
    let timer: NodeJS.Timeout | undefined
    const drained = await Promise.race([
      nc.drain().then(() => true, () => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)))
    ])
    clearTimeout(timer)
    if (drained) return
  }
  await nc.close().catch(() => undefined)
}

/**
 * Calls `listener` after each reconnect of `nc` until `stopped()` says so or the connection
 * closes. After a reconnect the old server's subscriptions' pull requests and answers are gone.
 */
export const onReconnect = (nc: NatsConnection, listener: () => void, stopped: () => boolean): void =>
  followConnection(nc, { up: listener }, stopped)

/** Calls `down` at each disconnect of `nc` and `up` at each reconnect, until `stopped()` or the connection closes. */
export const followConnection = (nc: NatsConnection, listeners: { readonly down?: () => void; readonly up: () => void }, stopped: () => boolean): void => {
  void (async () => {
    try {
      for await (const status of nc.status()) {
        if (stopped()) return
        if (status.type === "disconnect") listeners.down?.()
        else if (status.type === "reconnect") listeners.up()
      }
    } catch {
      // The iterator ends with the connection.
    }
  })()
}
