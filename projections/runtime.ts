/**
 * The projection runtime (DESIGN §4): one reader of the log per broker feeding every projection.
 *
 * Events arrive in log order in batches (src/eventlog/feed.ts — no acknowledgement per event).
 * Each is decoded with the event Schema — an undecodable one is quarantined: counted, logged with
 * its sequence, skipped, never stopping the stream — and folded into the tasks' states (docs.ts);
 * then every sink sees the change, in order. A sink's effect that goes to the server (a claim to
 * publish, an index entry to write) returns a promise; writes that can wait are coalesced and
 * made on the next tick. The position up to which everything is done — every effect settled,
 * every coalesced write made — is checkpointed, so a restart resumes there and replays at most a
 * tick's worth of events, which every sink handles idempotently.
 *
 * The per-event path is a plain loop on purpose (no Effect run per event); Effect carries the
 * structure around it: retries with named Schedules, the scope that starts and stops the runtime.
 */
import { Duration, Schedule } from "effect"
import type { StoredEvent } from "../src/domain/events.js"
import { decodeEvent, type RawEvent } from "../src/eventlog/codec.js"
import type { EventFeed } from "../src/eventlog/feed.js"
import { HEADERS } from "../src/tracing/conventions.js"
import { log } from "../src/log/log.js"
import { withTrace } from "../src/tracing/logFields.js"
import type { Change, TaskDocs } from "./docs.js"
import { tryThenRetry, type Attempted } from "../src/domain/retry.js"

/** One projection's reaction to the log: a sink of the folded changes. */
export interface Sink {
  /** Its name in metrics and logs; stable across releases. */
  readonly name: string
  /**
   * Acts on one change, in log order. A returned promise must settle before the checkpoint passes
   * the event; it is expected to retry on its own and reject only when the sink is stopped.
   */
  apply(change: Change): Promise<unknown> | undefined
  /** Writes what it coalesced (all of it when `all`). */
  flush?(all: boolean): Promise<void>
  /** Every event up to this sequence is durable in this sink, given `applied`. */
  durableThrough?(applied: number): number
  /** Stops retrying: the runtime is going away. */
  stop?(): void
}

export interface QuarantinedEvent {
  readonly projection: string
  readonly seq: number
  readonly subject: string
  readonly reason: string
}

export interface RuntimeHooks {
  /** Called for each quarantined event, once per projection (after it is logged). Must not throw. */
  readonly onQuarantine?: (event: QuarantinedEvent) => void
  /** Called after each event is applied, with its sequence (tests). Must not throw. */
  readonly onHandled?: (seq: number) => void
}

/** Where the position is kept between runs. */
export interface Checkpoint {
  save(seq: number): Promise<void>
}

export interface RuntimeOptions extends RuntimeHooks {
  /** How often coalesced writes are made and the position saved. Default 100 ms. */
  readonly tickMs?: number
  /** The position is saved at most this often. Default 1 s. */
  readonly checkpointEveryMs?: number
  /** Effects in flight at most before reading pauses. Default 20,000. */
  readonly maxPending?: number
}

/** How long a stopping runtime lets its in-flight effects settle before the final flush. */
const STOP_SETTLE_MS = 5_000

/** Reading the log or preparing a batch failed: try again, jittered, from 50 ms up to 5 s apart. */
export const READ_RETRY = Schedule.union(Schedule.exponential(Duration.millis(50), 2), Schedule.spaced(Duration.seconds(5))).pipe(Schedule.jittered)

const KNOWN_FAILURE = (error: unknown) => (error instanceof Error ? `${error.name}: ${error.message}` : String(error))

/** Log lines about an event carry its trace (the span that wrote it), so they join to it. */
const eventLogger = (raw: RawEvent) => withTrace(log, raw.header(HEADERS.traceparent) || undefined)

export class ProjectionRuntime {
  private readonly pending = new Map<number, Promise<unknown>>()
  private readonly tickMs: number
  private readonly checkpointEveryMs: number
  private readonly maxPending: number
  private appliedSeq: number
  private durableSeq: number
  private savedSeq: number
  private lastTick = 0
  private lastSave = 0
  private ticking: Promise<void> | undefined
  /** Ticks failed in a row (logged at warn once, then at debug). */
  private failedTicks = 0
  private stopping = false
  private abandoned = false
  private done: Promise<void> | undefined
  /** Callers of `appliedThrough` still waiting. */
  private readonly appliedWaiters = new Set<{ readonly seq: number; readonly resolve: () => void }>()
  /** A flush asked for (`flushNow`) and not started yet: its askers are told when it ends. */
  private asked: { readonly written: Promise<void>; readonly resolve: () => void; readonly reject: (error: unknown) => void } | undefined

  constructor(
    private readonly feed: EventFeed,
    private readonly docs: TaskDocs,
    private readonly sinks: ReadonlyArray<Sink>,
    private readonly checkpoint: Checkpoint,
    private readonly options: RuntimeOptions = {}
  ) {
    this.tickMs = options.tickMs ?? 100
    this.checkpointEveryMs = options.checkpointEveryMs ?? 1_000
    this.maxPending = options.maxPending ?? 20_000
    this.appliedSeq = feed.position
    this.durableSeq = feed.position
    this.savedSeq = feed.position
  }

  /** Last event applied. */
  get applied(): number {
    return this.appliedSeq
  }

  /** Every event up to here is done in every sink (as of the last tick). */
  get durable(): number {
    return this.durableSeq
  }

  /** Per sink: every event up to this sequence is done in it (as of the last tick). */
  positions(): ReadonlyMap<string, number> {
    const lowestPending = this.pending.keys().next().value
    const settled = lowestPending === undefined ? this.appliedSeq : lowestPending - 1
    const out = new Map<string, number>([["task-state", this.docs.durableThrough(this.appliedSeq)]])
    for (const sink of this.sinks) out.set(sink.name, Math.min(settled, sink.durableThrough?.(this.appliedSeq) ?? this.appliedSeq))
    return out
  }

  /** Runs until `stop()`; resolves once the last tick has saved the position. */
  run(): Promise<void> {
    this.done ??= this.loop()
    return this.done
  }

  /**
   * Makes every coalesced write now — the read model's documents and index, each sink's — and
   * resolves once they are stored, so a reader that asked sees every event applied before it
   * asked. A flush already under way may have started before those events: the asked one starts
   * after it, and askers who come before it starts share it. Rejects when the writes fail or the
   * runtime was abandoned; once stopping, resolves with the final flush.
   */
  flushNow(): Promise<void> {
    if (this.abandoned) return Promise.reject(new Error("the projections runtime was abandoned"))
    if (this.stopping) return this.done ?? Promise.resolve()
    if (this.asked === undefined) {
      let resolve: () => void = () => undefined
      let reject: (error: unknown) => void = () => undefined
      const written = new Promise<void>((yes, no) => {
        resolve = yes
        reject = no
      })
      this.asked = { written, resolve, reject }
    }
    const { written } = this.asked
    this.maybeTick()
    return written
  }

  /**
   * Resolves once every event up to `seq` is applied, or after `timeoutMs` (a fold far behind, a
   * sequence it never reaches), or at once when stopping.
   */
  appliedThrough(seq: number, timeoutMs: number): Promise<void> {
    if (this.appliedSeq >= seq || this.stopping) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const waiter = {
        seq,
        resolve: () => {
          clearTimeout(timer)
          this.appliedWaiters.delete(waiter)
          resolve()
        }
      }
      const timer = setTimeout(waiter.resolve, timeoutMs)
      this.appliedWaiters.add(waiter)
    })
  }

  /**
   * Resolves once the effects in flight now (a dead letter's index entry, a claim message) have
   * settled, or after `timeoutMs` (an effect retrying through an outage); the timer goes with it.
   */
  effectsSettled(timeoutMs: number): Promise<void> {
    if (this.pending.size === 0) return Promise.resolve()
    let timer: ReturnType<typeof setTimeout> | undefined
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))
    return Promise.race([Promise.allSettled([...this.pending.values()]).then(() => undefined), late]).finally(() => clearTimeout(timer))
  }

  /** Stops reading, lets in-flight effects settle, makes every coalesced write, saves the position. */
  stop(): Promise<void> {
    // Synchronously: the event being applied is the last one.
    this.stopping = true
    return this.done ?? Promise.resolve()
  }

  /**
   * Gives up at once (leadership lost, or the server gone): in-flight effects are abandoned and
   * nothing more is written or saved — the next fold replays from the last saved position.
   */
  abandon(): Promise<void> {
    this.stopping = true
    this.abandoned = true
    for (const sink of this.sinks) sink.stop?.()
    this.asked?.reject(new Error("the projections runtime was abandoned"))
    this.asked = undefined
    return this.done ?? Promise.resolve()
  }

  private async loop(): Promise<void> {
    const read = () => this.feed.next(this.tickMs)
    // Read again after a failure (READ_RETRY), still flushing the coalesced writes meanwhile.
    const again = (attempt: Attempted<Array<RawEvent>>): boolean => {
      if (attempt.ok || this.stopping) return false
      log.warn({ error: KNOWN_FAILURE(attempt.error) }, "projection runtime: reading the log failed; retrying")
      this.maybeTick()
      return true
    }
    while (!this.stopping) {
      const raws = await tryThenRetry(read, again, READ_RETRY).catch((): Array<RawEvent> => [])
      // Rejects only when stopping (a failed read of documents is retried inside).
      if (raws.length > 0) await this.handle(raws).catch((error: unknown) => log.warn({ error: KNOWN_FAILURE(error) }, "projection runtime: a batch was left for the next run"))
      this.wakeApplied()
      this.maybeTick()
    }
    this.wakeApplied()
    if (this.abandoned) return void (await this.feed.close(false))
    await this.ticking
    // Let what is in flight settle (bounded: a sink that cannot finish is stopped and replayed later).
    await this.effectsSettled(STOP_SETTLE_MS)
    for (const sink of this.sinks) sink.stop?.()
    // A flush asked for and not started: this one is it.
    const asked = this.asked
    this.asked = undefined
    await this.tick(true).then(
      () => asked?.resolve(),
      (error: unknown) => {
        log.warn({ error: KNOWN_FAILURE(error) }, "projection runtime: final flush failed")
        asked?.reject(error)
      }
    )
    await this.feed.close()
  }

  private async handle(raws: ReadonlyArray<RawEvent>): Promise<void> {
    const events: Array<StoredEvent> = []
    for (const raw of raws) {
      const decoded = decodeEvent(raw)
      if (decoded.ok) events.push(decoded.stored)
      else this.quarantine(raw, decoded.reason)
    }
    await tryThenRetry(() => this.docs.prepare(events), (attempt) => !attempt.ok && !this.stopping, READ_RETRY)
    let next = 0
    for (const raw of raws) {
      if (this.stopping) return
      const stored = events[next]
      if (stored?.seq === raw.seq) {
        next++
        const change = this.docs.apply(stored)
        for (const sink of this.sinks) {
          const effect = sink.apply(change)
          if (effect !== undefined) this.track(stored.seq, effect)
        }
        this.options.onHandled?.(stored.seq)
      }
      this.appliedSeq = raw.seq
    }
    // Back-pressure: the server is slower than the log right now.
    while (this.pending.size > this.maxPending && !this.stopping) await this.pending.values().next().value
  }

  /** Lets go the callers of `appliedThrough` whose sequence is applied (all of them when stopping). */
  private wakeApplied(): void {
    if (this.appliedWaiters.size === 0) return
    for (const waiter of this.appliedWaiters) if (waiter.seq <= this.appliedSeq || this.stopping) waiter.resolve()
  }

  private track(seq: number, effect: Promise<unknown>): void {
    // One entry per sequence: a second effect of the same event chains after the first.
    const previous = this.pending.get(seq)
    const both = previous === undefined ? effect : Promise.all([previous, effect])
    const entry: Promise<unknown> = both.then(
      () => {
        if (this.pending.get(seq) === entry) this.pending.delete(seq)
      },
      () => undefined
    )
    this.pending.set(seq, entry)
  }

  private quarantine(raw: RawEvent, reason: string): void {
    for (const projection of ["task-state", ...this.sinks.map((sink) => sink.name)]) {
      const event = { projection, seq: raw.seq, subject: raw.subject, reason }
      if (projection === "task-state") eventLogger(raw).warn(event, "event quarantined")
      try {
        this.options.onQuarantine?.(event)
      } catch {
        // observers never break the runtime
      }
    }
  }

  /** Starts a tick when the last one is `tickMs` ago, or at once when a flush was asked for; one at a time. */
  private maybeTick(): void {
    // Once stopping, the loop's final flush is the last one (two would write beside each other).
    if (this.ticking !== undefined || this.stopping) return
    const asked = this.asked
    if (asked === undefined && Date.now() - this.lastTick < this.tickMs) return
    this.asked = undefined
    this.ticking = this.tick(asked !== undefined)
      .then(
        () => {
          if (this.failedTicks > 0) log.info({ failed_ticks: this.failedTicks }, "projection runtime: coalesced writes go through again")
          this.failedTicks = 0
          asked?.resolve()
        },
        (error: unknown) => {
          // Once at warn per outage: through a leader election every tick (10 a second) fails.
          const level = this.failedTicks++ === 0 ? "warn" : "debug"
          log[level]({ error: KNOWN_FAILURE(error) }, "projection runtime: a coalesced write failed; retrying next tick")
          asked?.reject(error)
        }
      )
      .finally(() => {
        this.ticking = undefined
        // Asked for while this one ran: it starts now.
        if (this.asked !== undefined) this.maybeTick()
      })
  }

  private async tick(all: boolean): Promise<void> {
    this.lastTick = Date.now()
    await Promise.all([this.docs.flush(all), ...this.sinks.map((sink) => sink.flush?.(all))])
    let durable = Math.min(...this.positions().values())
    durable = Math.max(durable, this.durableSeq)
    this.durableSeq = durable
    if (durable > this.savedSeq && (all || Date.now() - this.lastSave >= this.checkpointEveryMs)) {
      await this.checkpoint.save(durable)
      this.savedSeq = durable
      this.lastSave = Date.now()
    }
  }
}
