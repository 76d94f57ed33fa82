/**
 * Applies a command to a task: read its history, decide, and append each resulting event from its
 * own span under the expected subject sequence. A lost race re-reads and decides again; a
 * rejection comes back as data. Every transition after the create is parented on the trace
 * context the create persisted (DESIGN §2, §6), whatever process performs it and however late.
 */
import { ROOT_CONTEXT, SpanStatusCode, type Context } from "@opentelemetry/api"
import type { TaskCommand, Rejection } from "../domain/decide.js"
import { decide } from "../domain/decide.js"
import { evolve, fold, type StoredEvent, type TaskState } from "../domain/events.js"
import { eventSubject } from "../../streams/definitions.js"
import type { EventLog } from "../eventlog/EventLog.js"
import { ConcurrencyConflict } from "../eventlog/errors.js"
import { contextFromTraceparent } from "../tracing/codec.js"
import type { Telemetry, TransitionSpan } from "../tracing/spans.js"
import { spanSpecFor } from "../tracing/transitions.js"

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

export class TaskRepository {
  constructor(
    readonly log: EventLog,
    readonly telemetry: Telemetry,
    private readonly maxConflictRetries = 20
  ) {}

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
    let snapshot = options.known ?? (await this.load(tenant, taskId))
    const appended: Array<AppliedEvent> = []
    let before = snapshot
    for (let round = 0; ; round++) {
      const decision = decide(snapshot.state, command(clock(), snapshot.state))
      if (decision._tag === "Rejection")
        return appended.length > 0 ? { ok: true, snapshot, before, appended } : { ok: false, rejection: decision, snapshot }
      before = snapshot
      const result = await this.appendAll(tenant, taskId, snapshot, decision.events, options.parent, options.span)
      snapshot = result.snapshot
      appended.push(...result.appended)
      if (result.conflict === undefined) return { ok: true, snapshot, before, appended }
      if (round >= this.maxConflictRetries) throw result.conflict
      snapshot = await this.load(tenant, taskId)
    }
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
      const span = openSpan ?? this.telemetry.startTransition(spec.tracer, spec.name, parent, spec.attributes)
      if (openSpan !== undefined) openSpan.span.setAttributes(spec.attributes)
      const result = await this.log.append({ tenant, taskId, event, trace: span.trace, expectedSeq: snapshot.version })
      if (!result.ok) {
        if (result.error instanceof ConcurrencyConflict) {
          // This span wrote nothing: it is left unended so it is never exported, keeping the
          // one-span-one-event mapping that replay relies on.
          return { snapshot, appended, conflict: result.error }
        }
        span.span.setStatus({ code: SpanStatusCode.ERROR, message: result.error.reason })
        span.span.end()
        throw result.error
      }
      const stored: StoredEvent = { seq: result.seq, subject, time: new Date(), event, trace: span.trace, prevSeq: snapshot.version }
      span.span.end()
      snapshot = { state: evolve(snapshot.state, stored), version: result.seq }
      appended.push({ stored, context: span.context })
    }
    return { snapshot, appended }
  }
}
