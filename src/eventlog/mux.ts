/**
 * Many requests in flight on one connection under one inbox subscription, matched to their
 * callers by the reply subject's last token (DESIGN §9). nats.js's own request() builds a
 * timer, an error and a promise chain per call and is what limits Node clients; this keeps one
 * subscription and one sweep timer for all of them. Replies are handed back raw.
 */
import { ErrorCode, createInbox, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from "nats"
import { publishSoon } from "./outbox.js"

export type MuxReply =
  | { readonly ok: true; readonly msg: Msg }
  | { readonly ok: false; readonly reason: "timeout" | "closed" | "rejected"; readonly detail: string }

export interface MuxOptions {
  /** How long to wait for each reply. Default 5 s. */
  readonly timeoutMs?: number
  /** Requests in flight at most; further callers wait for a slot. Default 4096. */
  readonly maxInFlight?: number
}

interface Pending {
  readonly subject: string
  readonly deadline: number
  readonly resolve: (reply: MuxReply) => void
}

export class RequestMux {
  private readonly inbox = createInbox()
  private readonly pending = new Map<number, Pending>()
  private readonly waiters: Array<() => void> = []
  private readonly sub: Subscription
  private readonly sweeper: NodeJS.Timeout
  readonly timeoutMs: number
  private readonly maxInFlight: number
  private next = 0
  private closed = false

  constructor(
    private readonly nc: NatsConnection,
    options: MuxOptions = {}
  ) {
    this.timeoutMs = options.timeoutMs ?? 5_000
    this.maxInFlight = options.maxInFlight ?? 4096
    this.sub = nc.subscribe(`${this.inbox}.*`, { callback: (_err, msg) => this.onReply(msg) })
    this.sweeper = setInterval(() => this.sweep(), Math.min(250, this.timeoutMs))
    this.sweeper.unref()
  }

  /** Sends once and resolves with the first reply, a timeout or closed; never rejects. */
  async request(subject: string, data: Uint8Array, headers?: MsgHdrs): Promise<MuxReply> {
    if (this.pending.size >= this.maxInFlight) await new Promise<void>((resolve) => this.waiters.push(resolve))
    if (this.closed || this.nc.isClosed()) return { ok: false, reason: "closed", detail: "the connection is closed" }
    const id = this.next++
    return new Promise<MuxReply>((resolve) => {
      this.pending.set(id, { subject, deadline: Date.now() + this.timeoutMs, resolve })
      publishSoon(
        this.nc,
        subject,
        data,
        headers === undefined ? { reply: `${this.inbox}.${id}` } : { reply: `${this.inbox}.${id}`, headers },
        (cause) => this.settle(id, this.unsent(cause, data))
      )
    })
  }

  /**
   * Why a request could not be sent. nats.js refuses a message over the server's max_payload as
   * it would refuse one on a closed connection; saying "closed" then sent a caller looking for an
   * outage that was not there.
   */
  private unsent(cause: unknown, data: Uint8Array): MuxReply {
    if ((cause as { code?: unknown } | null)?.code === ErrorCode.MaxPayloadExceeded)
      return { ok: false, reason: "rejected", detail: `the message (${data.length} bytes and its headers) is over the server's max_payload (${this.nc.info?.max_payload ?? "?"} bytes)` }
    return { ok: false, reason: "closed", detail: String(cause) }
  }

  /** The connection requests go out on. */
  get connection(): NatsConnection {
    return this.nc
  }

  get inFlight(): number {
    return this.pending.size
  }

  /** Stops listening; anything still in flight resolves as closed. */
  close(): void {
    if (this.closed) return
    this.closed = true
    clearInterval(this.sweeper)
    for (const id of [...this.pending.keys()]) this.settle(id, { ok: false, reason: "closed", detail: "closed" })
    for (const wake of this.waiters.splice(0)) wake()
    this.sub.unsubscribe()
  }

  private settle(id: number, reply: MuxReply): void {
    const entry = this.pending.get(id)
    if (entry === undefined) return
    this.pending.delete(id)
    entry.resolve(reply)
    this.waiters.shift()?.()
  }

  private onReply(msg: Msg): void {
    const id = Number(msg.subject.slice(this.inbox.length + 1))
    this.settle(id, { ok: true, msg })
  }

  private sweep(): void {
    const now = Date.now()
    // Deadlines grow with insertion order, so the expired entries are at the front.
    for (const [id, entry] of this.pending) {
      if (entry.deadline > now) break
      this.settle(id, { ok: false, reason: "timeout", detail: `no reply on ${entry.subject} within ${this.timeoutMs} ms` })
    }
  }
}
