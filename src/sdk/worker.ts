/**
 * The NATS-native worker: pulls claim messages for its commands, claims each task in the log,
 * runs the handler under a processing span that is a child of the claim, heartbeats at a third of
 * the lease while the handler runs, and settles the outcome (complete, fail, nack or abandon).
 *
 * A handler's return value completes the task; `fail(...)` is a permanent failure; a thrown error
 * is transient and nacks with the backoff policy. Nothing a handler does can crash the worker.
 */
import { hostname } from "node:os"
import { randomUUID } from "node:crypto"
import { SpanStatusCode, trace, type Context } from "@opentelemetry/api"
import { Duration, Schedule } from "effect"
import { backoff, tryThenRetry, type Attempted } from "../domain/retry.js"
import { LogError } from "../eventlog/errors.js"
import type { Connection } from "../eventlog/connection.js"
import type { BackoffSettings } from "../domain/backoff.js"
import { checkCommand, checkIntRange, checkTenant, checkWorkerId, firstIssue } from "../domain/validation.js"
import { answerDelivery } from "../eventlog/acks.js"
import type { ClaimDelivery } from "../eventlog/claims/source.js"
import { ClaimFeed } from "../eventlog/claims/feed.js"
import { timerDelayMs } from "../domain/delays.js"
import { ValidationError, LeaseLost } from "../tasks/errors.js"
import { boundOutcome, claimDelivery, heartbeatLease, settleLease, type HeldLease, type LeaseOutcome, type Settle } from "../tasks/lifecycle.js"
import type { TaskLimits } from "../tasks/limits.js"
import type { Snapshot, TaskRepository } from "../tasks/repository.js"
import type { TaskState } from "../domain/events.js"
import { toView, type TaskView } from "../tasks/view.js"
import { ATTR, SPANS, TRACERS } from "../tracing/conventions.js"
import { log } from "../log/log.js"

const OUTCOME = Symbol("codeq.outcome")

/** Sending a result again after the log failed: jittered, from 200 ms up to 5 s apart. */
/** Taking the next claim again after the feed failed: 100 ms doubling to 1 s, jittered. */
export const TAKE_RETRY = backoff(Duration.millis(100), Duration.seconds(1))

export const SETTLE_RETRY = Schedule.union(Schedule.exponential(Duration.millis(200), 2), Schedule.spaced(Duration.seconds(5))).pipe(Schedule.jittered)

/** An explicit handler outcome. Build with `complete`, `fail`, `nack` or `abandon`. */
export interface HandlerOutcome {
  readonly [OUTCOME]: LeaseOutcome
}

const outcome = (value: LeaseOutcome): HandlerOutcome => ({ [OUTCOME]: value })
export const complete = (result?: unknown, artifacts?: ReadonlyArray<unknown>): HandlerOutcome =>
  outcome({ type: "complete", result, ...(artifacts !== undefined ? { artifacts } : {}) })
/** A permanent failure: the task ends FAILED and is not retried. */
export const fail = (error: string, result?: unknown): HandlerOutcome => outcome({ type: "fail", error, result })
/** A transient failure: redelivered after `delaySeconds` (or the backoff policy). */
export const nack = (reason: string, delaySeconds?: number): HandlerOutcome =>
  outcome({ type: "nack", reason, ...(delaySeconds !== undefined ? { delaySeconds } : {}) })
/** Give the task back at once without using an attempt. */
export const abandon = (): HandlerOutcome => outcome({ type: "abandon" })

const isOutcome = (value: unknown): value is HandlerOutcome => typeof value === "object" && value !== null && OUTCOME in value

export interface JobContext {
  /** 1 on the first delivery. */
  readonly attempt: number
  /** Aborted when the worker is stopping (finish quickly or return `abandon()`). */
  readonly signal: AbortSignal
  /** The processing span's context: parent for anything the handler traces. */
  readonly traceContext: Context
}

export type Handler = (task: TaskView, job: JobContext) => Promise<unknown> | unknown

export interface WorkerOptions {
  /** Recorded on claims; default `<hostname>-<random>`. */
  readonly workerId?: string
  /** Lease asked for on each claim; default the task's, else the configured default. */
  readonly leaseSeconds?: number
  /** Ack wait of the claim consumers: how long a claim pulled by a worker that died before claiming stays hidden. Default 30 s. */
  readonly ackWaitMs?: number
  /** Called with anything unexpected (never thrown into the loop). */
  readonly onError?: (error: unknown, taskId: string | undefined) => void
}

export interface RunOptions {
  /** Handlers running at once. Default 1. */
  readonly concurrency?: number
}

export class Worker {
  readonly workerId: string
  private readonly abort = new AbortController()
  private running: Promise<void> | undefined
  private readonly settle: Settle

  constructor(
    private readonly nc: Connection,
    private readonly repo: TaskRepository,
    private readonly limits: TaskLimits,
    private readonly backoff: BackoffSettings,
    readonly tenant: string,
    private readonly options: WorkerOptions = {}
  ) {
    this.workerId = options.workerId ?? `${hostname()}-${randomUUID().slice(0, 8)}`
    const issue = firstIssue(
      checkTenant(tenant),
      checkWorkerId(this.workerId, "workerId"),
      options.leaseSeconds === undefined ? undefined : checkIntRange(options.leaseSeconds, "leaseSeconds", 1, limits.maxLeaseSeconds),
      options.ackWaitMs === undefined ? undefined : checkIntRange(options.ackWaitMs, "ackWaitMs", 1_000, 3_600_000)
    )
    if (issue !== undefined) throw new ValidationError(issue)
    this.settle = (subject, how) => answerDelivery(nc, subject, how)
    this.ackWaitMs = options.ackWaitMs ?? 30_000
  }

  private readonly ackWaitMs: number

  /** Processes tasks of `commands` until `stop()`; resolves when in-flight handlers are done. */
  run(commands: ReadonlyArray<string>, handler: Handler, options: RunOptions = {}): Promise<void> {
    if (this.running !== undefined) throw new Error("this worker is already running")
    // From JavaScript anything may come: a string would pass as its characters.
    if (!Array.isArray(commands)) throw new ValidationError({ field: "commands", rule: "type", message: "commands must be an array of commands" })
    for (const command of commands) {
      const issue = checkCommand(command, "commands")
      if (issue !== undefined) throw new ValidationError(issue)
    }
    if (commands.length === 0) throw new ValidationError({ field: "commands", rule: "non_empty", message: "commands must name at least one command" })
    if (commands.length > this.limits.maxClaimCommands)
      throw new ValidationError({ field: "commands", rule: "max_items", message: `a worker names at most ${this.limits.maxClaimCommands} commands` })
    this.running = this.loop(commands, handler, Math.max(1, options.concurrency ?? 1))
    return this.running
  }

  /** Stops pulling, lets running handlers finish and settle, then resolves. */
  async stop(): Promise<void> {
    this.abort.abort()
    await this.running
  }

  private async loop(commands: ReadonlyArray<string>, handler: Handler, concurrency: number): Promise<void> {
    const feed = new ClaimFeed(this.nc, this.repo.log.naming, this.tenant, commands, { capacity: concurrency, ackWaitMs: this.ackWaitMs })
    // The feed hands out at most `concurrency` claims not yet done: `take` waits for a free slot.
    const inflight = new Set<Promise<void>>()
    const stopFeed = () => feed.stop()
    this.abort.signal.addEventListener("abort", stopFeed, { once: true })
    try {
      while (!this.abort.signal.aborted) {
        const signal = this.abort.signal
        const retry = (attempt: Attempted<ClaimDelivery | undefined>) => {
          if (attempt.ok || signal.aborted) return false
          this.report(attempt.error, undefined)
          return true
        }
        const delivery = await tryThenRetry(() => feed.take(), retry, TAKE_RETRY).catch((): undefined => undefined)
        if (delivery === undefined) break
        const job: Promise<void> = this.process(delivery, handler).finally(() => {
          inflight.delete(job)
          feed.done()
        })
        inflight.add(job)
      }
    } finally {
      await Promise.allSettled(inflight)
      this.abort.signal.removeEventListener("abort", stopFeed)
      feed.close()
    }
  }

  private async process(delivery: ClaimDelivery, handler: Handler): Promise<void> {
    const taskId = delivery.claim?.taskId
    try {
      const claimed = await claimDelivery(this.repo, this.settle, delivery, {
        workerId: this.workerId,
        defaultLeaseSeconds: this.limits.defaultLeaseSeconds,
        keepAliveAckWaitMs: this.ackWaitMs,
        ...(this.options.leaseSeconds !== undefined ? { leaseSeconds: this.options.leaseSeconds } : {})
      })
      // A skipped claim was nak'ed to when it can next be claimed; the lane's long-poll brings it back.
      if (claimed.kind === "skipped") return
      const lease = claimed.lease
      const state = lease.snapshot.state
      if (state === null) return
      const span = this.repo.telemetry.startSpan(TRACERS.worker, SPANS.process, lease.claimContext, () => ({
        [ATTR.command]: state.command,
        [ATTR.tenantId]: state.tenant,
        [ATTR.taskId]: state.id,
        [ATTR.workerId]: this.workerId,
        [ATTR.attempt]: lease.attempt,
        [ATTR.messagingSystem]: "nats",
        [ATTR.messagingDestination]: `${this.repo.log.naming.subjectRoot}.claim.${state.tenant}.${state.command}.${state.priority}`,
        [ATTR.messagingOperationType]: "process"
      }))
      let known: Snapshot = lease.snapshot
      const keepAlive = this.keepClaimAlive(delivery.ackSubject, lease)
      const heartbeats = this.heartbeatWhileRunning(lease.tenant, lease.taskId, lease.attempt, lease.leaseSeconds, (beat) => {
        known = { state: beat, version: beat.version }
      })
      let result: LeaseOutcome
      try {
        const value = await handler(toView(state), { attempt: lease.attempt, signal: this.abort.signal, traceContext: trace.setSpan(lease.claimContext, span) })
        result = isOutcome(value) ? value[OUTCOME] : { type: "complete", result: value }
      } catch (error) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.name : "error" })
        result = { type: "nack", reason: `handler_error:${error instanceof Error ? error.name : typeof error}` }
      } finally {
        clearTimeout(keepAlive)
        await heartbeats.stop()
        span.end()
      }
      const bounded = boundOutcome(result, this.limits)
      if (bounded.issue !== undefined) this.report(new ValidationError(bounded.issue), lease.taskId)
      const outcome = bounded.outcome
      // A result the log could not take is sent again until the lease would end: leaving it
      // would hold the task for the whole lease and then run it a second time.
      const leaseEnd = Date.now() + lease.leaseSeconds * 1000
      const settleOnce = () =>
        settleLease(
          this.repo,
          this.settle,
          { tenant: lease.tenant, taskId: lease.taskId, lease: { workerId: this.workerId, attempt: lease.attempt }, known },
          outcome,
          this.backoff
        )
      // "rejected" too: through a leader election the server answers appends with errors that pass.
      const again = (error: unknown) => error instanceof LogError && error.reason !== "closed" && Date.now() < leaseEnd && !this.nc.isClosed()
      // The plain call first (a fiber per task costs the worker about a tenth of its CPU); the
      // schedule only after a settle failed, and the last failure itself if it gives up.
      await tryThenRetry(settleOnce, (attempt) => !attempt.ok && again(attempt.error), SETTLE_RETRY)
    } catch (error) {
      // LeaseLost: someone else holds the task now; the log refused us and that is the end of it.
      if (!(error instanceof LeaseLost)) this.report(error, taskId)
    }
  }

  /**
   * A claim whose lease outlasts the consumer's ack wait was not nak'ed at claim time (see
   * `keepAliveAckWaitMs`): if the handler is still running at half the ack wait, the claim message
   * is rescheduled to the lease's end — one message, and none at all for a handler that is quick.
   */
  private keepClaimAlive(ackSubject: string, lease: HeldLease): NodeJS.Timeout | undefined {
    if (lease.leaseSeconds * 1000 < this.ackWaitMs) return undefined
    const leaseEnd = Date.now() + lease.leaseSeconds * 1000
    const timer = setTimeout(() => this.settle(ackSubject, { nakDelayMs: leaseEnd - Date.now() }), this.ackWaitMs / 2)
    timer.unref()
    return timer
  }

  /**
   * Extends the lease by its length every third of it (a TaskHeartbeat plus a rescheduled
   * redelivery), one heartbeat at a time, until stopped. A refused heartbeat ends the loop.
   */
  private heartbeatWhileRunning(tenant: string, taskId: string, attempt: number, leaseSeconds: number, onBeat: (state: TaskState) => void) {
    let stopped = false
    let current: Promise<unknown> = Promise.resolve()
    const beat = () => {
      if (stopped) return
      current = heartbeatLease(this.repo, this.settle, { tenant, taskId, lease: { workerId: this.workerId, attempt } }, leaseSeconds).then(
        onBeat,
        (error: unknown) => {
          if (error instanceof LeaseLost) clearInterval(timer)
          else this.report(error, taskId)
        }
      )
    }
    const timer = setInterval(beat, timerDelayMs(Math.max(200, (leaseSeconds * 1000) / 3)))
    return {
      stop: async () => {
        stopped = true
        clearInterval(timer)
        await current
      }
    }
  }

  private report(error: unknown, taskId: string | undefined): void {
    try {
      if (this.options.onError !== undefined) this.options.onError(error, taskId)
      else log.error({ worker_id: this.workerId, task_id: taskId, error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) }, "worker error")
    } catch {
      // observers never break the loop
    }
  }
}
