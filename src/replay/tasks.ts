/**
 * Grouping the log's events by task with bounded memory, and turning a task's events into its
 * trace block. Only open tasks are held: a task is handed on when it ends — a terminal event, and
 * the webhook outcome after it when it has a webhook — or when the window ends. An audit holds
 * not even their events: each task's auditor keeps only what the rules need. A task whose events
 * come back later (a dead letter requeued, a webhook after the window) is a new fragment,
 * completed with its earlier events read back from the log (`needsPrefix`).
 *
 * Nothing here decodes an event body with its schema (trace.ts does, for full spans): an audit
 * never loads the schema library, which is most of its memory.
 */
import { TaskAuditor, type AuditOptions } from "./audit.js"
import type { LogRecord, Problem } from "./model.js"

/** How much of each span to rebuild: ids and times (an audit), or everything the live span had. */
export type TraceDetail = "ids" | "spans"

/** One task's consecutive events within the window. */
export interface Fragment {
  readonly subject: string
  readonly records: ReadonlyArray<LogRecord>
  /** The task ended with its last record (rather than the window ending). */
  readonly closed: boolean
}

/** A task as an audit sees it: counts and problems, no spans kept. */
export interface TaskAudit {
  readonly tenant: string
  readonly taskId: string
  readonly subject: string
  readonly traceId: string | undefined
  readonly command: string | undefined
  /** Events with a span, and events without one (no valid traceparent). */
  readonly spans: number
  readonly untraced: number
  readonly problems: ReadonlyArray<Problem>
  readonly closed: boolean
  readonly continued: boolean
}

const WEBHOOK_KEY = Buffer.from('"webhook"')
const contains = (b: Uint8Array, from: number, to: number, needle: Buffer): boolean =>
  Buffer.from(b.buffer, b.byteOffset + from, to - from).indexOf(needle) >= 0

/**
 * The bodies an audit reads: a create's when it may name a webhook (the task then ends with the
 * webhook's outcome, not its terminal event), and a failed webhook's (was it the last attempt?).
 * Everything else an audit checks is in the headers.
 */
export const AUDIT_BODIES = (type: string, b: Uint8Array, from: number, to: number): boolean =>
  type === "WebhookFailed" || (type === "TaskCreated" && contains(b, from, to, WEBHOOK_KEY))

const ENDS_RUN: ReadonlySet<string> = new Set(["TaskCompleted", "TaskFailed", "TaskDeadLettered"])
const ENDS_TASK: ReadonlySet<string> = new Set(["TaskCancelled", "TaskPurged", "TaskRejected", "WebhookDelivered"])

const field = (body: unknown, key: string): unknown => (typeof body === "object" && body !== null ? (body as Record<string, unknown>)[key] : undefined)

/** Whether a fragment beginning with `first` began after its task did (earlier events needed). */
const startsMidway = (first: LogRecord): boolean => first.type !== "TaskCreated" && first.prevSeq !== 0

export const needsPrefix = (fragment: Fragment): boolean => fragment.records[0] !== undefined && startsMidway(fragment.records[0])

interface OpenTask {
  /** Kept when spans are rebuilt, or when the task began before the window (audited later). */
  readonly records: Array<LogRecord> | undefined
  readonly auditor: TaskAuditor | undefined
  hasWebhook: boolean
  command: unknown
  onTrace: boolean
}

/**
 * What is left when a task closes: its audit (and whether any of its events was on the trace
 * asked for), or a fragment to build — or to complete with its earlier events first.
 */
export type Closed = { readonly audit: TaskAudit; readonly onTrace: boolean } | { readonly fragment: Fragment }

export class TaskAssembler {
  private readonly open = new Map<string, OpenTask>()

  constructor(
    private readonly detail: TraceDetail,
    private readonly audit: AuditOptions = {},
    /** The trace asked for: closed audits say whether one of their events was on it. */
    private readonly traceId?: string
  ) {}

  /** Tasks held (open) right now. */
  get size(): number {
    return this.open.size
  }

  /** Adds the next record of the log; returns what its task left when this record ends it. */
  add(record: LogRecord): Closed | undefined {
    let task = this.open.get(record.subject)
    if (task === undefined) {
      const keep = this.detail === "spans" || startsMidway(record)
      task = { records: keep ? [] : undefined, auditor: keep ? undefined : new TaskAuditor(record.subject, this.audit), hasWebhook: false, command: undefined, onTrace: false }
      this.open.set(record.subject, task)
    }
    if (task.records !== undefined) task.records.push(record)
    else task.auditor?.feed(record, true)
    if (this.traceId !== undefined && record.traceId === this.traceId) task.onTrace = true
    const type = record.type
    if (type === "TaskCreated") {
      const webhook = field(record.body, "webhook")
      task.hasWebhook = typeof webhook === "string" && webhook !== ""
      task.command = field(record.body, "command")
      return undefined
    }
    const ends = ENDS_TASK.has(type) || (ENDS_RUN.has(type) && !task.hasWebhook) || (type === "WebhookFailed" && field(record.body, "final") === true)
    if (!ends) return undefined
    this.open.delete(record.subject)
    return this.closed(record.subject, task, true)
  }

  /** The window ended: every open task as it stands. */
  drain(): Array<Closed> {
    const out = [...this.open].map(([subject, task]) => this.closed(subject, task, false))
    this.open.clear()
    return out
  }

  private closed(subject: string, task: OpenTask, closed: boolean): Closed {
    if (task.records !== undefined) return { fragment: { subject, records: task.records, closed } }
    const auditor = task.auditor as TaskAuditor
    const command = task.command
    return {
      audit: {
        tenant: auditor.tenant,
        taskId: auditor.taskId,
        subject,
        traceId: auditor.traceId,
        command: typeof command === "string" ? command : undefined,
        spans: auditor.spans,
        untraced: auditor.events - auditor.spans,
        problems: auditor.finish(),
        closed,
        continued: false
      },
      onTrace: task.onTrace
    }
  }
}

export const createOf = (records: ReadonlyArray<LogRecord>): LogRecord | undefined => records.find((r) => r.type === "TaskCreated")

/** An audit of a fragment: `prefix` are the task's events before it (context). */
export const auditFragment = (fragment: Fragment, prefix: ReadonlyArray<LogRecord>, audit: AuditOptions = {}): TaskAudit => {
  const auditor = new TaskAuditor(fragment.subject, audit)
  for (const r of prefix) auditor.feed(r, false)
  for (const r of fragment.records) auditor.feed(r, true)
  const command = field((createOf(fragment.records) ?? createOf(prefix))?.body, "command")
  return {
    tenant: auditor.tenant,
    taskId: auditor.taskId,
    subject: fragment.subject,
    traceId: auditor.traceId,
    command: typeof command === "string" ? command : undefined,
    spans: auditor.spans,
    untraced: auditor.events - auditor.spans,
    problems: auditor.finish(),
    closed: fragment.closed,
    continued: prefix.length > 0 || (fragment.records[0] !== undefined && startsMidway(fragment.records[0]))
  }
}

/** Whether a task's whole history ends it: its last event closes it, as the assembler decides. */
export const endsTask = (records: ReadonlyArray<LogRecord>): boolean => {
  const assembler = new TaskAssembler("spans")
  let closed = false
  for (const record of records) closed = assembler.add(record) !== undefined
  return closed
}
