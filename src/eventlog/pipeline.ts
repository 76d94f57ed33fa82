/**
 * The pipelined publisher (DESIGN §9): acked JetStream publishes sent as core publishes with a
 * reply subject under one shared inbox subscription, matched back to their callers by a map.
 * Thousands stay in flight on one connection without the client's per-request machinery, which is
 * what limits `js.publish` in Node. Each caller gets its own result: the stream sequence, or a
 * typed error (conflict, timeout, missing stream, rejection).
 *
 * Order: publishes leave the connection in call order, so the server stores them in that order.
 */
import { createInbox, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from "nats"
import { ConcurrencyConflict, JS_WRONG_LAST_SEQUENCE, LogError, type AppendError } from "./errors.js"

/** The outcome of one acked publish. */
export type PublishResult =
  | { readonly ok: true; readonly seq: number; readonly duplicate: boolean }
  | { readonly ok: false; readonly error: AppendError }

export interface PipelineOptions {
  /** How long to wait for each ack before reporting a timeout. Default 5 s. */
  readonly ackTimeoutMs?: number
  /** Publishes in flight at most; further callers wait for a slot. Default 4096. */
  readonly maxInFlight?: number
}

interface Pending {
  readonly subject: string
  readonly expectedSeq: number | undefined
  readonly deadline: number
  readonly resolve: (result: PublishResult) => void
}

interface PubAckWire {
  readonly seq?: number
  readonly duplicate?: boolean
  readonly error?: { readonly code?: number; readonly err_code?: number; readonly description?: string }
}

const decoder = new TextDecoder()

export class PipelinedPublisher {
  private readonly inbox = createInbox()
  private readonly pending = new Map<number, Pending>()
  private readonly waiters: Array<() => void> = []
  private readonly sub: Subscription
  private readonly sweeper: NodeJS.Timeout
  private readonly ackTimeoutMs: number
  private readonly maxInFlight: number
  private next = 0
  private closed = false

  constructor(
    private readonly nc: NatsConnection,
    options: PipelineOptions = {}
  ) {
    this.ackTimeoutMs = options.ackTimeoutMs ?? 5_000
    this.maxInFlight = options.maxInFlight ?? 4096
    this.sub = nc.subscribe(`${this.inbox}.*`, { callback: (_err, msg) => this.onReply(msg) })
    this.sweeper = setInterval(() => this.sweep(), Math.min(250, this.ackTimeoutMs))
    this.sweeper.unref()
  }

  /** Publishes once and resolves with the ack or a typed error; never rejects. */
  async publish(subject: string, data: Uint8Array, headers: MsgHdrs, expectedSeq?: number): Promise<PublishResult> {
    if (this.pending.size >= this.maxInFlight) await new Promise<void>((resolve) => this.waiters.push(resolve))
    if (this.closed || this.nc.isClosed())
      return { ok: false, error: new LogError({ reason: "closed", detail: "the connection is closed" }) }
    const id = this.next++
    return new Promise<PublishResult>((resolve) => {
      this.pending.set(id, { subject, expectedSeq, deadline: Date.now() + this.ackTimeoutMs, resolve })
      try {
        this.nc.publish(subject, data, { reply: `${this.inbox}.${id}`, headers })
      } catch (cause) {
        this.settle(id, { ok: false, error: new LogError({ reason: "closed", detail: String(cause), cause }) })
      }
    })
  }

  /** In-flight publishes right now. */
  get inFlight(): number {
    return this.pending.size
  }

  /** Stops listening; anything still in flight is reported as closed. */
  close(): void {
    if (this.closed) return
    this.closed = true
    clearInterval(this.sweeper)
    for (const id of [...this.pending.keys()])
      this.settle(id, { ok: false, error: new LogError({ reason: "closed", detail: "publisher closed" }) })
    for (const wake of this.waiters.splice(0)) wake()
    this.sub.unsubscribe()
  }

  private settle(id: number, result: PublishResult): void {
    const entry = this.pending.get(id)
    if (entry === undefined) return
    this.pending.delete(id)
    entry.resolve(result)
    this.waiters.shift()?.()
  }

  private onReply(msg: Msg): void {
    const id = Number(msg.subject.slice(this.inbox.length + 1))
    const entry = this.pending.get(id)
    if (entry === undefined) return
    this.settle(id, this.interpret(entry, msg))
  }

  private interpret(entry: Pending, msg: Msg): PublishResult {
    if (msg.headers?.code === 503 || (msg.data.length === 0 && msg.headers?.hasError === true))
      return { ok: false, error: new LogError({ reason: "stream_not_found", detail: `no stream answers on ${entry.subject}` }) }
    let ack: PubAckWire
    try {
      ack = JSON.parse(decoder.decode(msg.data)) as PubAckWire
    } catch (cause) {
      return { ok: false, error: new LogError({ reason: "rejected", detail: "unreadable publish ack", cause }) }
    }
    if (ack.error !== undefined) {
      if (ack.error.err_code === JS_WRONG_LAST_SEQUENCE) {
        const actual = /(\d+)\s*$/.exec(ack.error.description ?? "")?.[1]
        return {
          ok: false,
          error: new ConcurrencyConflict({
            subject: entry.subject,
            expectedSeq: entry.expectedSeq ?? -1,
            actualSeq: actual === undefined ? undefined : Number(actual)
          })
        }
      }
      return { ok: false, error: new LogError({ reason: "rejected", detail: ack.error.description ?? "publish refused" }) }
    }
    return { ok: true, seq: ack.seq ?? 0, duplicate: ack.duplicate === true }
  }

  private sweep(): void {
    const now = Date.now()
    // Deadlines grow with insertion order, so the expired entries are at the front.
    for (const [id, entry] of this.pending) {
      if (entry.deadline > now) break
      this.settle(id, {
        ok: false,
        error: new LogError({ reason: "timeout", detail: `no ack for ${entry.subject} within ${this.ackTimeoutMs} ms` })
      })
    }
  }
}
