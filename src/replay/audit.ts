/**
 * The audit (DESIGN §7): the rules one task's events must keep, checked from their trace headers
 * alone — so a million events are audited without decoding a body — and the tally of a run:
 * tasks, spans, and problems by rule with the first few examples naming task and rule.
 *
 * The auditor is incremental: it is fed a task's events in log order and keeps only what the
 * rules need (the create's span, the last terminal span, the span ids seen, the last times), so an
 * audit of a long log holds no event once it has been read.
 */
import type { AuditRule, LogRecord, Problem } from "./model.js"
import { AUDIT_RULES } from "./model.js"
import { compareNs, msBetween } from "./core.js"
import { isNanos, isSpanId, taskOfSubject } from "../eventlog/window/records.js"

/** Events that end a task's run and whose span a webhook is parented on. */
export const WEBHOOK_TERMINALS: ReadonlySet<string> = new Set(["TaskCompleted", "TaskFailed", "TaskDeadLettered"])
export const WEBHOOK_EVENTS: ReadonlySet<string> = new Set(["WebhookDelivered", "WebhookFailed"])

export interface AuditOptions {
  /** Clock skew tolerated between the writers' clocks and the server's, in ms. Default 0. */
  readonly skewMs?: number
}

/** Whether `a` is later than `b` by more than the tolerated skew (both epoch ns). */
const later = (a: string, b: string, skewNs: bigint): boolean => compareNs(a, b) > 0 && (skewNs === 0n || BigInt(a) - BigInt(b) > skewNs)

/** Checks one task's events, fed in log order. */
export class TaskAuditor {
  /**
   * Hundreds of thousands of these can be open at once in an audit: what one holds is kept small
   * (no array until there is a second span or a problem, names derived from the subject).
   */
  private problemList: Array<Problem> | undefined
  /** Events fed with `check`, and how many of them had a span (a valid traceparent). */
  events = 0
  spans = 0
  createSpan: string | undefined
  traceId: string | undefined
  private readonly skewNs: bigint
  private sawCreate = false
  /** The task's first span, then any more in `moreSpans` as id, seq, id, seq… */
  private firstSpanId: string | undefined
  private firstSpanSeq = 0
  private moreSpans: Array<string | number> | undefined
  private terminalSpan: string | undefined
  private terminalSeq = 0
  private lastSeq: number | undefined
  private lastStart: string | undefined
  private lastEnd: string | undefined
  private firstSeq: number | undefined
  private firstType = ""
  private finished = false

  constructor(
    private readonly subject: string,
    options: AuditOptions = {}
  ) {
    this.skewNs = options.skewMs === undefined || options.skewMs === 0 ? 0n : BigInt(Math.round(options.skewMs * 1e6))
  }

  get tenant(): string {
    return taskOfSubject(this.subject).tenant
  }

  get taskId(): string {
    return taskOfSubject(this.subject).taskId
  }

  get problems(): ReadonlyArray<Problem> {
    return this.problemList ?? []
  }

  private report(rule: AuditRule, seq: number | undefined, message: string): void {
    const { tenant, taskId } = taskOfSubject(this.subject)
    ;(this.problemList ??= []).push({ rule, tenant, taskId, seq, message })
  }

  private spanSeq(spanId: string): number | undefined {
    if (spanId === this.firstSpanId) return this.firstSpanSeq
    const more = this.moreSpans
    if (more === undefined) return undefined
    for (let i = 0; i < more.length; i += 2) if (more[i] === spanId) return more[i + 1] as number
    return undefined
  }

  private addSpan(spanId: string, seq: number): void {
    if (this.firstSpanId === undefined) {
      this.firstSpanId = spanId
      this.firstSpanSeq = seq
    } else (this.moreSpans ??= []).push(spanId, seq)
  }

  private describeParent(parent: string | undefined): string {
    if (parent === undefined) return "nothing (a root span)"
    const seq = this.spanSeq(parent)
    return seq === undefined ? `span ${parent}, which is not in the task's log (unknown)` : `span ${parent} (seq ${seq})`
  }

  /** The next event of the task; `check` false for context read from before the window. */
  feed(r: LogRecord, check = true): void {
    if (this.firstSeq === undefined) {
      this.firstSeq = r.seq
      this.firstType = r.type
    }
    if (check) this.events++
    if (r.type === "TaskCreated" && !this.sawCreate) {
      this.sawCreate = true
      this.createSpan = r.spanId
      this.traceId = r.traceId
      if (check && this.lastSeq !== undefined) this.report("orphan", r.seq, `TaskCreated comes after other events of its task (the first, seq ${this.firstSeq ?? "?"}, is ${this.firstType || "untyped"})`)
    }
    if (check && r.prevSeq !== undefined && this.lastSeq !== undefined && r.prevSeq !== this.lastSeq)
      this.report("missing-event", r.seq, `${r.type} was appended after seq ${r.prevSeq}, but the task's previous event in the log is seq ${this.lastSeq}`)
    else if (check && r.prevSeq !== undefined && r.prevSeq > 0 && this.lastSeq === undefined && r.type === "TaskCreated")
      this.report("missing-event", r.seq, `${r.type} was appended after seq ${r.prevSeq}, which is not in the log`)
    this.lastSeq = r.seq
    const spanId = r.spanId
    if (spanId === undefined || r.traceId === undefined) {
      if (check) this.report("trace-headers", r.seq, r.traceparent === undefined ? `${r.type || "event"} has no traceparent` : `${r.type || "event"} has a malformed traceparent ${JSON.stringify(r.traceparent.slice(0, 80))}`)
      return
    }
    if (check) this.spans++
    const parent = r.parentSpanId
    const validStart = r.spanStart !== undefined && isNanos(r.spanStart)
    const validParent = parent !== undefined && isSpanId(parent)
    if (check) {
      if (!validStart) this.report("trace-headers", r.seq, `${r.type} has no valid Codeq-Span-Start`)
      if (parent !== undefined && !validParent) this.report("trace-headers", r.seq, `${r.type} has a malformed Codeq-Parent-Span ${JSON.stringify(parent.slice(0, 40))}`)
      else if (parent === undefined && r.type !== "TaskCreated") this.report("trace-headers", r.seq, `${r.type} has no Codeq-Parent-Span`)
    }
    this.traceId ??= r.traceId
    if (check && r.traceId !== this.traceId) this.report("trace-id", r.seq, `${r.type} is on trace ${r.traceId}, the task's create on ${this.traceId}`)
    const earlier = this.spanSeq(spanId)
    if (earlier === undefined) this.addSpan(spanId, r.seq)
    else if (check) this.report("duplicate-span", r.seq, `${r.type} reuses span id ${spanId} of seq ${earlier}`)

    if (check && WEBHOOK_EVENTS.has(r.type)) {
      if (this.terminalSpan === undefined) this.report("parent-terminal", r.seq, `${r.type} delivers no terminal event: none precedes it`)
      else if (parent !== this.terminalSpan)
        this.report("parent-terminal", r.seq, `${r.type} is parented on ${this.describeParent(parent)}, not on the terminal event's span ${this.terminalSpan} (seq ${this.terminalSeq})`)
    } else if (check && r.type !== "TaskCreated" && this.createSpan !== undefined && parent !== this.createSpan && validParent) {
      this.report("parent-create", r.seq, `${r.type} is parented on ${this.describeParent(parent)}, not on the create span ${this.createSpan}`)
    }
    if (WEBHOOK_TERMINALS.has(r.type)) {
      this.terminalSpan = spanId
      this.terminalSeq = r.seq
    } else if (r.type === "TaskRequeued") this.terminalSpan = undefined

    const start = validStart ? (r.spanStart as string) : r.timeNs
    if (check) {
      if (later(start, r.timeNs, this.skewNs)) this.report("time-order", r.seq, `${r.type} starts ${msBetween(start, r.timeNs).toFixed(3)} ms after it was stored`)
      if (this.lastStart !== undefined && later(this.lastStart, start, this.skewNs))
        this.report("time-order", r.seq, `${r.type} starts ${msBetween(this.lastStart, start).toFixed(3)} ms before the task's previous span`)
      if (this.lastEnd !== undefined && later(this.lastEnd, r.timeNs, this.skewNs))
        this.report("time-order", r.seq, `${r.type} was stored ${msBetween(this.lastEnd, r.timeNs).toFixed(3)} ms before the task's previous event`)
    }
    this.lastStart = start
    this.lastEnd = r.timeNs
  }

  /** The problems, the task-wide ones (no TaskCreated in the log) included. */
  finish(): ReadonlyArray<Problem> {
    if (!this.sawCreate && this.firstSeq !== undefined && !this.finished)
      this.report("orphan", undefined, `no TaskCreated for this task in the log (its first event, seq ${this.firstSeq}, is ${this.firstType || "untyped"})`)
    this.finished = true
    return this.problems
  }
}

/**
 * Checks `records` (one task's events in log order) against every rule. `prefix` holds the task's
 * earlier events when the window began after its start: context only, not checked again.
 */
export const auditTask = (records: ReadonlyArray<LogRecord>, prefix: ReadonlyArray<LogRecord>, options: AuditOptions = {}): ReadonlyArray<Problem> => {
  const first = prefix[0] ?? records[0]
  if (first === undefined) return []
  const auditor = new TaskAuditor(first.subject, options)
  for (const r of prefix) auditor.feed(r, false)
  for (const r of records) auditor.feed(r, true)
  return auditor.finish()
}

/** What the tally needs of a task: its problems and how many spans and events it had. */
export interface Audited {
  readonly problems: ReadonlyArray<Problem>
  readonly spans: number | ReadonlyArray<unknown>
  readonly untraced: number | ReadonlyArray<unknown>
}

/** A run's audit: counts, and problems by rule with the first examples of each. */
export class AuditTally {
  tasks = 0
  spans = 0
  events = 0
  private readonly byRule = new Map<AuditRule, { count: number; examples: Array<Problem> }>()

  constructor(private readonly examplesPerRule = 5) {}

  add(task: Audited): void {
    const spans = typeof task.spans === "number" ? task.spans : task.spans.length
    const untraced = typeof task.untraced === "number" ? task.untraced : task.untraced.length
    this.tasks++
    this.spans += spans
    this.events += spans + untraced
    for (const problem of task.problems) {
      const entry = this.byRule.get(problem.rule) ?? { count: 0, examples: [] }
      entry.count++
      if (entry.examples.length < this.examplesPerRule) entry.examples.push(problem)
      this.byRule.set(problem.rule, entry)
    }
  }

  get problemCount(): number {
    let n = 0
    for (const entry of this.byRule.values()) n += entry.count
    return n
  }

  /** The summary as data (for JSON output and tests). */
  summary(): AuditSummary {
    return {
      tasks: this.tasks,
      spans: this.spans,
      events: this.events,
      problems: this.problemCount,
      rules: [...this.byRule].map(([rule, entry]) => ({ rule, description: AUDIT_RULES[rule], count: entry.count, examples: entry.examples }))
    }
  }
}

export interface AuditSummary {
  readonly tasks: number
  readonly spans: number
  readonly events: number
  readonly problems: number
  readonly rules: ReadonlyArray<{ readonly rule: AuditRule; readonly description: string; readonly count: number; readonly examples: ReadonlyArray<Problem> }>
}

/** The summary for a human. */
export const renderAuditSummary = (s: AuditSummary): string => {
  const lines = [`audit: ${s.tasks} tasks, ${s.spans} spans, ${s.events} events — ${s.problems === 0 ? "no problems" : `${s.problems} problem${s.problems === 1 ? "" : "s"}`}`]
  for (const rule of s.rules) {
    lines.push(`  ${rule.rule}: ${rule.count} (${rule.description})`)
    for (const p of rule.examples) lines.push(`    task ${p.tenant}/${p.taskId}${p.seq === undefined ? "" : ` seq ${p.seq}`} [${p.rule}]: ${p.message}`)
  }
  return lines.join("\n")
}
