/**
 * What replay works with: the log's events as compact records (the trace headers of the span that
 * wrote each one, its place and its log timestamp), the spans rebuilt from them, a task's trace
 * as one block, and the problems an audit finds. Times are Unix epoch nanoseconds as decimal
 * strings throughout: a JavaScript number cannot hold them exactly, and OTLP wants strings.
 */
import type { Attributes, SpanKind, SpanStatusCode } from "@opentelemetry/api"
import type { TaskStatus } from "../domain/events.js"

export type { LogRecord } from "../eventlog/window/records.js"

/** The ids and times of the span that wrote one event: what an audit checks. */
export interface SpanCore {
  readonly seq: number
  /** The event type (`TaskClaimed`, …). */
  readonly event: string
  readonly traceId: string
  readonly spanId: string
  /** W3C trace flags as recorded (all eight bits). */
  readonly traceFlags: number
  readonly traceState: string | undefined
  /** Undefined for a root span. A parent not in the log (the caller's, the HTTP server's) is remote. */
  readonly parentSpanId: string | undefined
  readonly startNs: string
  readonly endNs: string
}

export interface SpanStatusJson {
  readonly code: SpanStatusCode
  readonly message?: string
}

/** A span rebuilt as the live one was: name, tracer, kind, attributes and status too. */
export interface ReplaySpan extends SpanCore {
  readonly name: string
  /** The tracer (instrumentation scope) that made it. */
  readonly scope: string
  readonly kind: SpanKind
  readonly attributes: Attributes
  readonly status: SpanStatusJson
}

/** The rules `--audit` checks (DESIGN §7). */
export const AUDIT_RULES = {
  "trace-headers": "every event carries valid trace headers (traceparent, Codeq-Span-Start, Codeq-Parent-Span)",
  "trace-id": "one trace id per task: every event on its create's trace",
  "parent-create": "each transition parented on its task's create span",
  "parent-terminal": "each webhook span parented on the span of the terminal event it delivers",
  "duplicate-span": "no span id used twice",
  "time-order": "times monotonic per task: a span ends after it starts, spans in log order",
  "missing-event": "no event of the task missing from the log (Codeq-Prev-Seq chain)",
  orphan: "every task has its TaskCreated in the log"
} as const

export type AuditRule = keyof typeof AUDIT_RULES

/** One broken rule, on one event (seq) or the whole task. */
export interface Problem {
  readonly rule: AuditRule
  readonly tenant: string
  readonly taskId: string
  readonly seq: number | undefined
  readonly message: string
}

/**
 * One task's trace as a block: its spans in log order (full spans, or only ids and times when
 * auditing), the events that carry no usable trace context, and what is wrong with them.
 */
export interface TaskTrace<S extends SpanCore = ReplaySpan> {
  readonly tenant: string
  readonly taskId: string
  readonly subject: string
  /** The create's trace (else the first traced event's). */
  readonly traceId: string | undefined
  /** The create's parent: the producer's or HTTP server's span, not in the log. */
  readonly remoteParentSpanId: string | undefined
  readonly command: string | undefined
  /** After the last event replayed; undefined when the task's state is unknown (no create). */
  readonly status: TaskStatus | undefined
  readonly attempts: number | undefined
  readonly spans: ReadonlyArray<S>
  /** Events without a valid traceparent: no span can be rebuilt for them. */
  readonly untraced: ReadonlyArray<{ readonly seq: number; readonly event: string }>
  readonly problems: ReadonlyArray<Problem>
  /** The task reached its end (terminal, and a webhook outcome after it) within the window. */
  readonly closed: boolean
  /** The task began before the window: its earlier events were read for context only. */
  readonly continued: boolean
}

/** A selection of the log. Every field narrows; none reads it all. */
export interface ReplayFilter {
  readonly taskId?: string
  readonly traceId?: string
  readonly tenant?: string
  readonly command?: string
  /** Events stored at or after this instant. */
  readonly since?: Date
  /** Events stored at or before this instant. */
  readonly until?: Date
  readonly fromSeq?: number
  readonly toSeq?: number
}
