/**
 * Applies a command to a task: read its history, decide, and append each resulting event from its
 * own span under the expected subject sequence. A lost race re-reads and decides again; a
 * rejection comes back as data. Every transition after the create is parented on the trace
 * context the create persisted (DESIGN §2, §6), whatever process performs it and however late.
 */
import { ROOT_CONTEXT, SpanStatusCode, type Context } from "@opentelemetry/api"
import { Duration, Effect, Schedule } from "effect"
import { backoff, retryingPromise, tryThenRetry } from "../domain/retry.js"
import type { TaskCommand, Rejection } from "../domain/decide.js"
import { decide } from "../domain/decide.js"
import { evolve, fold, type StoredEvent, type TaskState } from "../domain/events.js"
import { eventSubject } from "../../streams/definitions.js"
import type { AppendRequest, AppendResult, EventLog } from "../eventlog/EventLog.js"
import { ConcurrencyConflict, type AppendError } from "../eventlog/errors.js"
import { contextFromTraceparent, spanStartNow } from "../tracing/codec.js"
import { hrNow, type Telemetry, type TransitionSpan } from "../tracing/spans.js"
import { baggageHeaderOf } from "../tracing/propagation.js"
import { spanSpecFor, spanStatusOf } from "../tracing/transitions.js"

/** A task's state with the sequence it was read at. */
export interface Snapshot {
  readonly state: TaskState | null
  readonly version: number
}

export interface AppliedEvent {
  readonly stored: StoredEvent
  /** The context of the span that wrote it (parent for work it causes, e.g. a webhook). */
  readonly context: Context
}

export type ApplyOutcome =
  | {
      readonly ok: true
      readonly snapshot: Snapshot
      /** The state the accepted decision was made on. */
      readonly before: Snapshot
      readonly appended: ReadonlyArray<AppliedEvent>
    }
  | { readonly ok: false; readonly rejection: Rejection; readonly snapshot: Snapshot }

export interface ApplyOptions {
  /** State already in hand (e.g. from the claim); saves a read when nobody raced us. */
  readonly known?: Snapshot
  /** Parent of a create's span (an incoming traceparent); later spans use the persisted one. */
  readonly parent?: Context
  /**
   * A span already open for the (single) event this command writes — a webhook delivery opens its
   * span before the POST so the request carries it. Reused across conflict retries.
   */
  readonly span?: TransitionSpan
  /** The current time (tests); defaults to the wall clock. */
  readonly now?: () => Date
}

/**
 * Sending an append again that the log did not take: jittered exponential from 50 ms, for up to
 * the repository's retry budget. Only where it is safe — see `retryable`.
 */
export const appendRetry = (budgetMs: number) =>
  Schedule.exponential(Duration.millis(50), 2).pipe(Schedule.jittered, Schedule.upTo(Duration.millis(budgetMs)))

/** Looking again for an append whose outcome is unknown: 100 ms doubling to 1 s, jittered (the budget is the caller's). */
export const RESOLVE_RETRY = backoff(Duration.millis(100), Duration.seconds(1))

/**
 * An append that may be sent again: nobody answered (a leader election, nothing stored), or a
 * create's ack timed out — a create expects sequence 0, so if the first one was stored the second
 * is refused as a conflict and the repository finds the task that exists.
 */
const retryable = (error: AppendError, request: AppendRequest): boolean =>
  error._tag === "LogError" && (error.reason === "unavailable" || (error.reason === "timeout" && request.expectedSeq === 0))

export interface RepositoryOptions {
  /** Re-reads after losing a race before giving up with ConcurrencyConflict. Default 20. */
  readonly maxConflictRetries?: number
  /** How long a retryable append (see `retryable`) is sent again before its error is reported. Default 5 s. */
  readonly appendRetryMs?: number
  /**
   * How long the outcome of an append that got no ack (or lost a race after one) is looked for
   * in the log before the timeout is reported. Default 30 s: a server restart or a leader
   * election fits in it, and an unresolved append would leave a lease held until it runs out.
   */
  readonly resolveUnknownMs?: number
}

export class TaskRepository {
  private readonly maxConflictRetries: number
  private readonly appendRetryMs: number
  private readonly resolveUnknownMs: number
  /** Made once: a schedule is a description, and building one per append cost the hot path. */
  private readonly sendRetry: ReturnType<typeof appendRetry>
  private retriedAppends = 0
  private unknownOutcomes = 0

  constructor(
    readonly log: EventLog,
    readonly telemetry: Telemetry,
    options: RepositoryOptions = {}
  ) {
    this.maxConflictRetries = options.maxConflictRetries ?? 20
    this.appendRetryMs = options.appendRetryMs ?? 5_000
    this.resolveUnknownMs = options.resolveUnknownMs ?? 30_000
    this.sendRetry = appendRetry(this.appendRetryMs)
  }

  /** Appends sent again after an unanswered publish or a create's timeout, since start. */
  get appendRetries(): number {
    return this.retriedAppends
  }

  /** Appends whose outcome had to be looked for in the log (no ack, or a lost resend), since start. */
  get unresolvedAppends(): number {
    return this.unknownOutcomes
  }

  async load(tenant: string, taskId: string): Promise<Snapshot> {
    const history = await this.log.readTask(tenant, taskId)
    return { state: fold(history.events), version: history.version }
  }

  /**
   * Decides `command(now, state)` against the task and appends what it decides. Rejects only with
   * LogError (the log failed) or ConcurrencyConflict (still losing races after many re-reads).
   */
  async apply(
    tenant: string,
    taskId: string,
    command: (now: Date, state: TaskState | null) => TaskCommand,
    options: ApplyOptions = {}
  ): Promise<ApplyOutcome> {
    const clock = options.now ?? (() => new Date())
    const appended: Array<AppliedEvent> = []
    // The snapshot the last append started from (what a caller compares the outcome with).
    let before: Snapshot | undefined
    // One round: decide against `snapshot` and append; a lost race ends it with the conflict.
    const round = async (snapshot: Snapshot): Promise<ApplyOutcome | ConcurrencyConflict> => {
      const decision = decide(snapshot.state, command(clock(), snapshot.state))
      if (decision._tag === "Rejection")
        return appended.length > 0 ? { ok: true, snapshot, before: before ?? snapshot, appended } : { ok: false, rejection: decision, snapshot }
      before = snapshot
      const result = await this.appendAll(tenant, taskId, snapshot, decision.events, options.parent, options.span)
      appended.push(...result.appended)
      return result.conflict ?? { ok: true, snapshot: result.snapshot, before: snapshot, appended }
    }
    const first = await round(options.known ?? (await this.load(tenant, taskId)))
    if (!(first instanceof ConcurrencyConflict)) return first
    // Lost the race: re-read and decide again, at once, up to maxConflictRetries times.
    const outcome = await retryingPromise(
      async () => round(await this.load(tenant, taskId)),
      (attempt) => attempt.ok && attempt.value instanceof ConcurrencyConflict,
      Schedule.recurs(Math.max(0, this.maxConflictRetries - 1))
    )
    if (outcome instanceof ConcurrencyConflict) throw outcome
    return outcome
  }

  /**
   * One append, sent again while its failure is retryable and the budget lasts. An append whose
   * outcome is unknown (no ack) or that lost its race is looked for in the log: the event it
   * would have stored carries this span's traceparent, unique to this attempt, so finding it
   * there means it was stored — the append succeeded, whatever the ack said.
   */
  private async append(request: AppendRequest): Promise<AppendResult> {
    let sends = 0
    const send = () => {
      // Counted as they go: a caller watching the count sees a resend while it is retried.
      if (sends++ > 0) this.retriedAppends++
      return this.log.append(request)
    }
    // Sent again only while its failure is retryable and the budget lasts. A first send that lost
    // its race lost it to someone else: not retryable, the caller re-reads and decides.
    const result = await tryThenRetry(send, (attempt) => attempt.ok && !attempt.value.ok && this.appendRetryMs > 0 && retryable(attempt.value.error, request), this.sendRetry)
    if (result.ok || (sends === 1 && result.error._tag === "ConcurrencyConflict")) return result
    // No ack (it may be stored), or a resend that lost to ... possibly the first send itself.
    const unknown = result.error._tag === "LogError" && result.error.reason === "timeout"
    if (!unknown && result.error._tag !== "ConcurrencyConflict") return result
    return this.resolve(request, result)
  }

  /**
   * Was `request`'s event stored? Reads the log (retrying while it cannot be read) until the
   * budget runs out: its own traceparent there means stored; another writer's event there means a
   * lost race; nothing there means not stored (yet), and it is sent again — a resend that nobody
   * answers (an election still going on) or that conflicts (the first send landed late) is looked
   * for again. Never appends twice: every send expects the same sequence.
   */
  private async resolve(request: AppendRequest, failed: AppendResult & { ok: false }): Promise<AppendResult> {
    this.unknownOutcomes++
    const deadline = Date.now() + this.resolveUnknownMs
    // One look: the outcome when the log tells it, undefined when the resend found nothing yet.
    const look = async (): Promise<AppendResult | undefined> => {
      const read = Effect.tryPromise(() => this.log.readTask(request.tenant, request.taskId, request.expectedSeq + 1)).pipe(
        Effect.retry(appendRetry(Math.max(0, deadline - Date.now()))),
        Effect.option
      )
      const after = await Effect.runPromise(read)
      if (after._tag === "None") return failed
      const next = after.value.events[0]
      if (next?.trace?.traceparent === request.trace.traceparent) return { ok: true, seq: next.seq, duplicate: true }
      if (after.value.version > request.expectedSeq) {
        // Another writer's event follows: a lost race, which the caller re-reads and decides again.
        if (failed.error._tag === "LogError")
          return { ok: false, error: new ConcurrencyConflict({ subject: eventSubject(this.log.naming, request.tenant, request.taskId), expectedSeq: request.expectedSeq, actualSeq: after.value.version }) }
        return failed
      }
      // Nothing after the expected sequence: it was not stored, and sending it again is safe.
      if (failed.error._tag !== "LogError" || Date.now() >= deadline) return failed
      this.retriedAppends++
      const again = await this.log.append(request)
      if (again.ok) return again
      // A conflict: maybe the first send, stored late — read again. A refusal or a closed
      // connection will not change by trying again.
      if (again.error._tag === "LogError" && (again.error.reason === "rejected" || again.error.reason === "closed")) return again
      return undefined
    }
    const outcome = await retryingPromise(look, (attempt) => attempt.ok && attempt.value === undefined && Date.now() < deadline, RESOLVE_RETRY)
    return outcome ?? failed
  }

  private async appendAll(
    tenant: string,
    taskId: string,
    start: Snapshot,
    events: ReadonlyArray<StoredEvent["event"]>,
    createParent: Context | undefined,
    openSpan: TransitionSpan | undefined
  ): Promise<{ snapshot: Snapshot; appended: Array<AppliedEvent>; conflict?: ConcurrencyConflict }> {
    let snapshot = start
    const appended: Array<AppliedEvent> = []
    const subject = eventSubject(this.log.naming, tenant, taskId)
    for (const event of events) {
      const parent =
        event.type === "TaskCreated"
          ? (createParent ?? ROOT_CONTEXT)
          : contextFromTraceparent(snapshot.state?.traceParent, snapshot.state?.traceState)
      const spec = spanSpecFor(event, snapshot.state, subject)
      // The create keeps its context's baggage for the webhook (DESIGN §6: receivers get it back).
      const baggage = event.type === "TaskCreated" ? baggageHeaderOf(parent) : undefined
      const span = openSpan ?? this.telemetry.startTransition(spec.tracer, spec.name, parent, spec.attributes, baggage)
      if (openSpan?.span.isRecording() === true) openSpan.span.setAttributes(spec.attributes())
      // The span ends as its event is handed to the log, and the event says when (Codeq-Span-End):
      // replay rebuilds that end exactly. Explicit: given a start time, the SDK would take the end
      // from Date.now(), in whole milliseconds.
      const end = spanStartNow()
      const trace = { ...span.trace, spanEnd: end.nanos }
      const result = await this.append({ tenant, taskId, event, trace, expectedSeq: snapshot.version })
      if (!result.ok) {
        if (result.error instanceof ConcurrencyConflict) {
          // This span wrote nothing: it is left unended so it is never exported, keeping the
          // one-span-one-event mapping that replay relies on.
          return { snapshot, appended, conflict: result.error }
        }
        span.span.setStatus({ code: SpanStatusCode.ERROR, message: result.error.reason })
        span.span.end(hrNow())
        throw result.error
      }
      const stored: StoredEvent = { seq: result.seq, subject, time: new Date(), event, trace, prevSeq: snapshot.version }
      const status = spanStatusOf(event)
      if (status.code !== SpanStatusCode.UNSET) span.span.setStatus(status)
      span.span.end(end.hr)
      snapshot = { state: evolve(snapshot.state, stored), version: result.seq }
      appended.push({ stored, context: span.context })
    }
    return { snapshot, appended }
  }
}
