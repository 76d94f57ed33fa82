/**
 * Where workers get claim messages: one durable pull consumer per claim subject (work-queue
 * streams need non-overlapping filters), created on demand and removed by the server when idle.
 *
 * A claim takes from the highest non-empty lane of the worker's commands without scanning ten
 * empty consumers: the source keeps a set of lanes that may hold messages. It is seeded from one
 * stream-info request (per-subject counts), refilled by a core subscription on the claim subjects
 * (every dispatched claim is also seen there, naming its lane), and refreshed by a periodic rescan
 * that catches redeliveries (expired leases, nak delays). Pulls are no-wait: an empty lane answers
 * at once and leaves the set.
 */
import { createInbox, type Msg, type NatsConnection } from "nats"
import { claimConsumerName, ensureClaimConsumer } from "./consumers.js"
import { claimSubjects, claimsStream, type Naming } from "../../../streams/definitions.js"
import { timerDelayMs } from "../../domain/delays.js"
import { decodeClaim, type ClaimMessage } from "./message.js"
import type { LaneWatch } from "./laneWatch.js"
import { parseAckSubject } from "../acks.js"
import { utf8 } from "../utf8.js"

/** One delivery of a claim message, and its ack handle (a subject any connection can answer). */
export interface ClaimDelivery {
  readonly claim: ClaimMessage | undefined
  readonly ackSubject: string
  /** JetStream's delivery count for this message (1 on first delivery). */
  readonly delivered: number
  readonly streamSeq: number
  readonly command: string
  readonly lane: number
}

export interface ClaimSourceOptions {
  /** The consumers' ack wait: how long a silent claim stays hidden. Default 30 s. */
  readonly ackWaitMs?: number
  /** Rescan of all lanes while idle. Default 1 s. */
  readonly rescanMs?: number
  /** Durable consumers are deleted by the server after this long unused. Default 1 h. */
  readonly inactiveMs?: number
}

export const LANES = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0] as const

/** How far past its wait a claim may run when a request is slow. */
const GRACE_MS = 200

export class ClaimSource {
  private readonly hot = new Set<string>()
  private readonly ensured = new Set<string>()
  private readonly wanted: ReadonlySet<string>
  private readonly unwatch: () => void
  private readonly hints = new Set<NodeJS.Timeout>()
  private readonly wakers = new Set<() => void>()
  private lastScan = 0
  private waiting = 0
  private readonly ackWaitMs: number
  private readonly rescanMs: number
  private readonly inactiveMs: number
  private readonly stream: string

  constructor(
    private readonly nc: NatsConnection,
    private readonly naming: Naming,
    private readonly tenant: string,
    private readonly commands: ReadonlyArray<string>,
    lanes: LaneWatch,
    options: ClaimSourceOptions = {}
  ) {
    this.ackWaitMs = options.ackWaitMs ?? 30_000
    this.rescanMs = options.rescanMs ?? 1_000
    this.inactiveMs = options.inactiveMs ?? 3_600_000
    this.stream = claimsStream(naming)
    this.wanted = new Set(commands)
    // One shared subscription per tenant tells every source which lanes just got work.
    this.unwatch = lanes.watch(tenant, (command, lane) => {
      if (!this.wanted.has(command)) return
      this.hot.add(this.key(command, lane))
      this.wakeAll()
      // The core subscription can see a claim a moment before the stream hands it out: a pull
      // that comes back empty right now is tried again shortly, not only at the next scan.
      this.hint(command, lane, new Date(Date.now() + 20))
    })
  }

  get ackWait(): number {
    return this.ackWaitMs
  }

  /** True while a claim waits on this source (a long-poll): not to be closed under it. */
  get busy(): boolean {
    return this.waiting > 0
  }

  /**
   * Up to `max` deliveries from the highest lane that has any; waits up to `waitMs` when all are
   * empty. Resolves with none when the wait ends or `signal` aborts.
   */
  async next(max: number, waitMs: number, signal?: AbortSignal): Promise<ReadonlyArray<ClaimDelivery>> {
    this.waiting++
    try {
      return await this.nextOnce(max, waitMs, signal)
    } finally {
      this.waiting--
    }
  }

  private async nextOnce(max: number, waitMs: number, signal?: AbortSignal): Promise<ReadonlyArray<ClaimDelivery>> {
    const deadline = Date.now() + waitMs
    // Every request is bounded by what is left of the wait (at least a short grace), so a slow
    // or lost answer never holds a claim past its wait by more than that grace.
    const budget = () => Math.max(GRACE_MS, deadline - Date.now())
    for (;;) {
      if (signal?.aborted === true) return []
      // A scan that fails or is slow is tried again later; new work wakes the source meanwhile.
      if (Date.now() - this.lastScan >= this.rescanMs) await this.rescan(budget()).catch(() => undefined)
      for (const lane of LANES) {
        for (const command of this.commands) {
          const key = this.key(command, lane)
          if (!this.hot.has(key)) continue
          const got = await this.pull(command, lane, max, budget())
          if (got.length > 0) return got
          this.hot.delete(key)
        }
      }
      const left = deadline - Date.now()
      if (left <= 0) return []
      await this.idle(Math.min(left, this.rescanMs), signal)
    }
  }

  /** Stops watching lanes and drops pending hints: nothing keeps the source alive afterwards. */
  close(): void {
    this.unwatch()
    for (const timer of this.hints) clearTimeout(timer)
    this.hints.clear()
    this.hot.clear()
    this.ensured.clear()
    this.wakeAll()
  }

  /**
   * Marks a lane as holding work from `at` on (a nak'ed claim due back then). The server's timer
   * and ours are not in step, and a pull that arrives first finds the lane empty and drops it, so
   * the lane is marked once more a little later.
   */
  hint(command: string, lane: number, at: Date): void {
    for (const extraMs of [0, 250]) {
      const timer = setTimeout(() => {
        this.hints.delete(timer)
        this.hot.add(this.key(command, lane))
        this.wakeAll()
      }, timerDelayMs(at.getTime() - Date.now() + extraMs))
      timer.unref()
      this.hints.add(timer)
    }
  }

  private wakeAll(): void {
    for (const wake of [...this.wakers]) wake()
  }

  private key(command: string, lane: number) {
    return `${command}.${lane}`
  }

  private idle(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer)
        signal?.removeEventListener("abort", done)
        this.wakers.delete(done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      signal?.addEventListener("abort", done, { once: true })
      this.wakers.add(done)
    })
  }

  /** One request for the per-subject counts of this tenant's claim subjects, given up after `timeoutMs`. */
  private async rescan(timeoutMs: number): Promise<void> {
    this.lastScan = Date.now()
    const jsm = await this.nc.jetstreamManager({ timeout: timeoutMs, checkAPI: false })
    const info = await jsm.streams.info(this.stream, { subjects_filter: claimSubjects(this.naming, this.tenant) })
    for (const [subject, count] of Object.entries(info.state.subjects ?? {})) {
      if (count <= 0) continue
      const parts = subject.split(".")
      const command = parts[parts.length - 2] ?? ""
      if (this.wanted.has(command)) this.hot.add(this.key(command, Number(parts[parts.length - 1])))
    }
  }

  private async ensureConsumer(command: string, lane: number): Promise<string> {
    const name = claimConsumerName(this.tenant, command, lane)
    if (this.ensured.has(name)) return name
    await ensureClaimConsumer(await this.nc.jetstreamManager({ checkAPI: false }), this.naming, this.tenant, command, lane, { ackWaitMs: this.ackWaitMs, inactiveMs: this.inactiveMs })
    this.ensured.add(name)
    return name
  }

  /** A no-wait pull of up to `max` messages from one lane's consumer. */
  private async pull(command: string, lane: number, max: number, timeoutMs: number): Promise<Array<ClaimDelivery>> {
    const durable = await this.ensureConsumer(command, lane)
    const inbox = createInbox()
    const out: Array<ClaimDelivery> = []
    return new Promise((resolve) => {
      const finish = () => {
        clearTimeout(timer)
        sub.unsubscribe()
        resolve(out)
      }
      const sub = this.nc.subscribe(inbox, {
        callback: (_err, msg: Msg) => {
          const code = msg.headers?.code ?? 0
          if (code !== 0 || msg.reply === undefined) {
            if (code !== 404 && code !== 408) this.ensured.delete(durable)
            return finish()
          }
          const { delivered, streamSeq } = parseAckSubject(msg.reply)
          out.push({ claim: decodeClaim(msg.data), ackSubject: msg.reply, delivered, streamSeq, command, lane })
          if (out.length >= max) finish()
        }
      })
      const timer = setTimeout(finish, Math.min(5_000, timeoutMs))
      this.nc.publish(`$JS.API.CONSUMER.MSG.NEXT.${this.stream}.${durable}`, utf8(JSON.stringify({ batch: max, no_wait: true })), { reply: inbox })
    })
  }
}
