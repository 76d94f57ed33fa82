/**
 * The SDK worker's supply of claim messages, lean on server messages: one inbox subscription for
 * all its lanes, and per (command, lane) at most one open pull request.
 *
 * - A lane with work ("hot") is pulled with `no_wait` for up to the worker's free capacity: the
 *   server sends what it has at once and ends the request. Pulls wait until a good share of the
 *   capacity is free, so each request carries many claims.
 * - A lane that came back empty ("cold") keeps a one-message long-poll open: it wakes the moment a
 *   claim is dispatched to it or a delayed one comes due, and the lane turns hot again. The lane
 *   that last had claims ("warm") asks for up to a quarter of the capacity instead, held for it,
 *   while at least half of the capacity stays free besides: claims come in bursts (a producer's
 *   `createMany`, a dispatcher's turn), and a one-message long-poll took the first of a burst at
 *   once and left the rest for the next pull, a round trip later (`npm run bench -- e2e --hops`:
 *   0.8 ms at the median at 500 tasks/s). It is asked for only while most of the capacity is
 *   free, and ends within a second: should the worker fill up meanwhile, a higher lane finds at
 *   most a quarter of the capacity held, for at most that second.
 * - Deliveries wait in a buffer ordered by lane (9 first), so a higher priority always goes first.
 *
 * Nothing here decides anything: the log does (lifecycle.ts). A claim the worker will not run is
 * handed back with a nak.
 *
 * WHY a watchdog: a pull request lives only in the memory of the consumer's leader. When that
 * server dies (a cluster node lost, a single server restarted), the request vanishes without a
 * status, and a lane that waits for its answer would never be pulled again. Long-polls ask for
 * idle heartbeats, and a request that has been silent too long is taken as lost and sent again.
 */
import { createInbox, type Msg, type NatsConnection, type Subscription } from "nats"
import { claimSubject, claimsStream, type Naming } from "../../../streams/definitions.js"
import { answerDelivery, parseAckSubject } from "../acks.js"
import { statusOfMessage } from "../rawHeaders.js"
import { onReconnect } from "../connection.js"
import { publishSoon } from "../outbox.js"
import { ensureClaimConsumer } from "./consumers.js"
import { LANES, type ClaimDelivery } from "./source.js"
import { decodeClaim } from "./message.js"
import { utf8 } from "../utf8.js"

export interface ClaimFeedOptions {
  /** Deliveries held at once: running plus buffered. */
  readonly capacity: number
  /** Ack wait of the lane consumers. */
  readonly ackWaitMs: number
  /** Consumers unused this long are removed by the server. Default 1 h. */
  readonly inactiveMs?: number
}

interface Lane {
  readonly index: number
  readonly command: string
  readonly lane: number
  hot: boolean
  open: boolean
  /** Messages asked for by the open request and not yet received. */
  owed: number
  /** The open request is a one-message long-poll: its message is extra, not part of the capacity. */
  sentinel: boolean
  /** The open request is a long-poll (heartbeats tell it is alive), a sentinel or a warm lane's. */
  longPoll: boolean
  /** No consumer answered: not asked again before this time (ms). */
  retryAt: number
  /** When the open request was sent or last heard from (a message or a heartbeat), in ms. */
  heardAt: number
}

/** A long-poll on a cold lane. */
const COLD_EXPIRES_MS = 30_000
/** The server's heartbeat on a long-poll while it has nothing to send. */
const HEARTBEAT_MS = 2_000
/**
 * A long-poll silent this long is lost (its server died); so is a no-wait pull without an answer
 * (a live leader answers one at once: messages, or 404). Taking a slow one for lost costs a pull.
 */
const LOST_LONG_POLL_MS = 2 * HEARTBEAT_MS + 1_000
const LOST_NO_WAIT_MS = 2_000
/** A warm lane's long-poll asks for at most this share of the capacity, and this many claims. */
const WARM_SHARE = 4
const WARM_MAX = 16
/**
 * A warm lane's long-poll ends this soon (and is sent again while the lane stays warm and the
 * capacity free): the capacity it holds is never kept from a higher lane for longer, should the
 * worker fill up meanwhile. One request a second on an idle worker.
 */
const WARM_EXPIRES_MS = 1_000

export class ClaimFeed {
  private readonly inbox = createInbox()
  private readonly sub: Subscription
  private readonly lanes: Array<Lane> = []
  private readonly bySubject = new Map<string, Lane>()
  private readonly buffer: Array<Array<ClaimDelivery>> = LANES.map(() => [])
  private readonly stream: string
  private buffered = 0
  private running = 0
  private stopped = false
  private waiter: (() => void) | undefined
  private started: Promise<void> | undefined
  private readonly watchdog: NodeJS.Timeout
  /** The lane that last received a claim. */
  private warm: Lane | undefined

  constructor(
    private readonly nc: NatsConnection,
    private readonly naming: Naming,
    private readonly tenant: string,
    private readonly commands: ReadonlyArray<string>,
    private readonly options: ClaimFeedOptions
  ) {
    this.stream = claimsStream(naming)
    for (const lane of LANES)
      for (const command of commands) {
        const l: Lane = { index: this.lanes.length, command, lane, hot: true, open: false, owed: 0, sentinel: false, longPoll: false, retryAt: 0, heardAt: 0 }
        this.lanes.push(l)
        this.bySubject.set(claimSubject(naming, tenant, command, lane), l)
      }
    this.sub = nc.subscribe(`${this.inbox}.*`, { callback: (_err, msg) => this.onMessage(msg) })
    this.watchdog = setInterval(() => this.reopenLost(), 1_000)
    this.watchdog.unref()
    // A reconnect means the requests sent before it went down with the old server.
    onReconnect(nc, () => this.reopenLost(true), () => this.stopped)
  }

  /**
   * The next claim to run, highest lane first; waits for one, and for a free slot (at most
   * `capacity` taken and not yet `done`: a cold lane's long-poll may bring a claim beyond the
   * capacity, which waits in the buffer). Resolves undefined once stopped. The caller runs it and
   * calls `done()` when its slot is free again.
   */
  async take(): Promise<ClaimDelivery | undefined> {
    this.started ??= this.ensureConsumers().catch((error: unknown) => {
      this.started = undefined
      throw error
    })
    await this.started
    for (;;) {
      if (this.stopped) return undefined
      const next = this.running < this.options.capacity ? this.shift() : undefined
      if (next !== undefined) {
        this.running++
        this.pump()
        return next
      }
      this.pump()
      await new Promise<void>((resolve) => (this.waiter = resolve))
    }
  }

  /** A delivery taken with `take` has been settled: its slot is free. */
  done(): void {
    this.running--
    this.wake()
    this.pump()
  }

  /** Stops asking for claims and hands buffered ones back at once (a nak with no delay). */
  stop(): void {
    if (this.stopped) return
    this.stopped = true
    for (const queue of this.buffer) for (const delivery of queue.splice(0)) answerDelivery(this.nc, delivery.ackSubject, { nakDelayMs: 0 })
    this.buffered = 0
    this.wake()
  }

  /** Stops and drops the inbox; a claim the server sends after this comes back after its ack wait. */
  close(): void {
    this.stop()
    clearInterval(this.watchdog)
    this.sub.unsubscribe()
  }

  /**
   * Requests that went silent are lost with their server: forget them and pull again (a consumer
   * that is gone or has no leader answers 503, and is made again then). With `all`, every open
   * request is lost: the connection moved to another server.
   */
  private reopenLost(all = false): void {
    if (this.stopped || this.started === undefined) return
    const now = Date.now()
    let lost = false
    for (const l of this.lanes) {
      if (!l.open || (!all && now - l.heardAt <= (l.longPoll ? LOST_LONG_POLL_MS : LOST_NO_WAIT_MS))) continue
      l.open = false
      l.owed = 0
      l.sentinel = false
      l.longPoll = false
      l.hot = true
      lost = true
    }
    if (lost) this.pump()
  }

  private async ensureConsumers(): Promise<void> {
    const jsm = await this.nc.jetstreamManager({ checkAPI: false })
    await Promise.all(
      this.lanes.map((l) => ensureClaimConsumer(jsm, this.naming, this.tenant, l.command, l.lane, { ackWaitMs: this.options.ackWaitMs, inactiveMs: this.options.inactiveMs ?? 3_600_000 }))
    )
  }

  private shift(): ClaimDelivery | undefined {
    for (const queue of this.buffer) {
      const next = queue.shift()
      if (next !== undefined) {
        this.buffered--
        return next
      }
    }
    return undefined
  }

  private wake(): void {
    const waiter = this.waiter
    this.waiter = undefined
    waiter?.()
  }

  /** Opens the requests the free capacity allows, highest lane first. */
  private pump(): void {
    if (this.stopped || this.started === undefined) return
    const now = Date.now()
    let owed = 0
    for (const l of this.lanes) if (!l.sentinel) owed += l.owed
    let free = this.options.capacity - this.running - this.buffered - owed
    // Hot lanes: pull what is there now, in priority order, once a good share of capacity is free.
    const worth = this.running + this.buffered === 0 ? 1 : Math.max(1, Math.floor(this.options.capacity / 4))
    for (const l of this.lanes) {
      if (!l.hot || l.open || l.retryAt > now) continue
      if (free < worth) break
      this.request(l, free, true)
      free -= l.owed
    }
    // Cold lanes: a one-message long-poll each, outside the capacity (a few extra claims at most);
    // the warm one a share of the capacity, held, while at least half of it stays free besides.
    const capacity = this.options.capacity
    for (const l of this.lanes) {
      if (l.hot || l.open || l.retryAt > now) continue
      const share = l === this.warm ? Math.min(WARM_MAX, Math.floor(capacity / WARM_SHARE), free - Math.floor(capacity / 2)) : 1
      if (share > 1) {
        this.request(l, share, false, true)
        free -= share
      } else this.request(l, 1, false)
    }
  }

  /** `held`: a long-poll whose claims count in the capacity (a warm lane's), not a sentinel. */
  private request(l: Lane, batch: number, noWait: boolean, held = false): void {
    l.open = true
    l.owed = batch
    l.sentinel = !noWait && !held
    l.longPoll = !noWait
    l.heardAt = Date.now()
    const body = noWait
      ? { batch, no_wait: true }
      : held
        ? { batch, expires: WARM_EXPIRES_MS * 1_000_000 }
        : { batch, expires: COLD_EXPIRES_MS * 1_000_000, idle_heartbeat: HEARTBEAT_MS * 1_000_000 }
    const durable = `claim-${this.tenant}-${l.command}-${l.lane}`
    publishSoon(this.nc, `$JS.API.CONSUMER.MSG.NEXT.${this.stream}.${durable}`, utf8(JSON.stringify(body)), { reply: `${this.inbox}.${l.index}` })
  }

  private onMessage(msg: Msg): void {
    // A status ends a request and arrives on the request's own reply subject; a claim arrives on
    // the inbox too but under its original subject, `<root>.claim.<tenant>.<command>.<lane>`.
    const l = msg.subject.startsWith(this.inbox) ? this.lanes[Number(msg.subject.slice(this.inbox.length + 1))] : this.bySubject.get(msg.subject)
    if (l === undefined) {
      if (msg.reply !== undefined) answerDelivery(this.nc, msg.reply, { nakDelayMs: 0 })
      return
    }
    const code = statusOfMessage(msg)
    l.heardAt = Date.now()
    // An idle heartbeat: the long-poll is alive.
    if (code === 100) return
    if (code !== 0 || msg.reply === undefined) {
      // The request is over (404 nothing, 408 expired, 409 consumer changed): what it owed is void.
      // A pull that came back short means the lane is empty for now.
      l.open = false
      l.hot = false
      l.owed = 0
      l.sentinel = false
      l.longPoll = false
      if (code === 503) {
        // Nobody answers for the consumer (removed while idle, or a leader election): make it
        // again before asking, and not in a tight loop.
        l.retryAt = Date.now() + 1_000
        this.started = this.ensureConsumers().catch(() => undefined)
        setTimeout(() => this.pump(), 1_000).unref()
        return
      }
      this.pump()
      return
    }
    if (this.stopped) {
      answerDelivery(this.nc, msg.reply, { nakDelayMs: 0 })
      return
    }
    const { delivered, streamSeq } = parseAckSubject(msg.reply)
    const queue = this.buffer[LANES.length - 1 - l.lane]
    queue?.push({ claim: decodeClaim(msg.data), ackSubject: msg.reply, delivered, streamSeq, command: l.command, lane: l.lane })
    this.buffered++
    l.hot = true
    this.warm = l
    if (--l.owed <= 0) {
      // The request is filled and ended without a status message.
      l.open = false
      l.owed = 0
      l.sentinel = false
      l.longPoll = false
    }
    this.wake()
  }
}
