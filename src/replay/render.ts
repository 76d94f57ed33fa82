/**
 * Trace blocks for people and programs: a span as JSON (a JSON line, and the nodes of the HTTP
 * trace route), a task's span tree as nested JSON, and the same tree as text for a terminal —
 * one task's trace per block, durations, attempts, leases, webhook outcomes, markers on problems.
 */
import { SpanKind, SpanStatusCode, type AttributeValue, type Attributes } from "@opentelemetry/api"
import { ATTR } from "../tracing/conventions.js"
import { isoFromNs, msBetween } from "./core.js"
import type { AuditRule, ReplaySpan, TaskTrace } from "./model.js"

export interface SpanJson {
  readonly seq: number
  readonly event: string
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly traceFlags: string
  readonly traceState?: string
  readonly name: string
  readonly scope: string
  readonly kind: string
  readonly start: string
  readonly startTimeUnixNano: string
  readonly endTimeUnixNano: string
  readonly durationMs: number
  readonly status: { readonly code: "UNSET" | "OK" | "ERROR"; readonly message?: string }
  readonly attributes: Attributes
  readonly problems: ReadonlyArray<{ readonly rule: AuditRule; readonly message: string }>
}

const STATUS = { [SpanStatusCode.UNSET]: "UNSET", [SpanStatusCode.OK]: "OK", [SpanStatusCode.ERROR]: "ERROR" } as const

export const spanJson = (span: ReplaySpan, trace: TaskTrace): SpanJson => ({
  seq: span.seq,
  event: span.event,
  traceId: span.traceId,
  spanId: span.spanId,
  ...(span.parentSpanId !== undefined ? { parentSpanId: span.parentSpanId } : {}),
  traceFlags: span.traceFlags.toString(16).padStart(2, "0"),
  ...(span.traceState !== undefined ? { traceState: span.traceState } : {}),
  name: span.name,
  scope: span.scope,
  kind: SpanKind[span.kind] ?? String(span.kind),
  start: isoFromNs(span.startNs),
  startTimeUnixNano: span.startNs,
  endTimeUnixNano: span.endNs,
  durationMs: msBetween(span.endNs, span.startNs),
  status: { code: STATUS[span.status.code], ...(span.status.message !== undefined ? { message: span.status.message } : {}) },
  attributes: span.attributes,
  problems: trace.problems.filter((p) => p.seq === span.seq).map(({ rule, message }) => ({ rule, message }))
})

/** One JSON line per span, with its task. */
export const jsonLines = (trace: TaskTrace): Array<string> =>
  trace.spans.map((span) => JSON.stringify({ tenant: trace.tenant, taskId: trace.taskId, ...spanJson(span, trace) }))

export interface SpanNode extends SpanJson {
  readonly children: ReadonlyArray<SpanNode>
}

/** The spans as a forest: each under its parent when the parent is in the task, else a root. */
export const spanForest = (trace: TaskTrace): Array<SpanNode> => {
  const byId = new Map<string, ReplaySpan>()
  for (const span of trace.spans) if (!byId.has(span.spanId)) byId.set(span.spanId, span)
  const children = new Map<string, Array<ReplaySpan>>()
  const roots: Array<ReplaySpan> = []
  for (const span of trace.spans) {
    const parent = span.parentSpanId === undefined ? undefined : byId.get(span.parentSpanId)
    // A span claiming itself (a duplicate id) or an unknown span as parent stands alone.
    if (parent === undefined || parent === span) roots.push(span)
    else children.set(parent.spanId, [...(children.get(parent.spanId) ?? []), span])
  }
  const seen = new Set<ReplaySpan>()
  const node = (span: ReplaySpan): SpanNode => {
    seen.add(span)
    const kids = (children.get(span.spanId) ?? []).filter((kid) => !seen.has(kid))
    return { ...spanJson(span, trace), children: kids.map(node) }
  }
  return roots.map(node)
}

/** The HTTP trace route's body. */
export const traceJson = (trace: TaskTrace) => ({
  taskId: trace.taskId,
  tenant: trace.tenant,
  traceId: trace.traceId,
  remoteParentSpanId: trace.remoteParentSpanId,
  command: trace.command,
  status: trace.status,
  attempts: trace.attempts,
  closed: trace.closed,
  spans: spanForest(trace),
  untraced: trace.untraced,
  problems: trace.problems
})

const num = (value: AttributeValue | undefined): number | undefined => (typeof value === "number" ? value : undefined)

const formatMs = (ms: number): string => (Math.abs(ms) >= 1_000 ? `${(ms / 1_000).toFixed(3)} s` : `${ms.toFixed(3)} ms`)

/** What one span's line says beyond its name: the event's own facts. */
const details = (span: ReplaySpan): string => {
  const a = span.attributes
  const out: Array<string> = []
  const attempt = num(a[ATTR.attempt])
  switch (span.event) {
    case "TaskCreated":
      out.push(`priority ${String(a[ATTR.priority] ?? "?")}`)
      if (a[ATTR.hasWebhook] === true) out.push("webhook")
      break
    case "TaskClaimed":
      out.push(`attempt ${attempt ?? "?"}`, `worker ${String(a[ATTR.workerId] ?? "?")}`, `lease ${String(a[ATTR.leaseSeconds] ?? "?")} s`)
      break
    case "TaskHeartbeat":
      out.push(`lease +${String(a[ATTR.extendSeconds] ?? "?")} s`)
      break
    case "TaskNacked":
      out.push(`attempt ${attempt ?? "?"}`, `delay ${String(a[ATTR.delaySeconds] ?? "?")} s`, `reason ${JSON.stringify(a[ATTR.reason] ?? "")}`)
      break
    case "TaskLeaseExpired":
      out.push(`attempt ${attempt ?? "?"}`, `worker ${String(a[ATTR.workerId] ?? "?")}`)
      break
    case "TaskCompleted":
    case "TaskFailed":
      out.push(String(a[ATTR.status] ?? span.event), `attempt ${attempt ?? "?"}`)
      break
    case "WebhookDelivered":
    case "WebhookFailed":
      out.push(`${span.event === "WebhookDelivered" ? "✓" : "✗"} attempt ${String(a[ATTR.webhookAttempt] ?? "?")}`, `HTTP ${String(a["http.response.status_code"] ?? "?")}`)
      break
    default:
      if (a[ATTR.reason] !== undefined) out.push(`reason ${JSON.stringify(a[ATTR.reason])}`)
  }
  if (span.status.code === SpanStatusCode.ERROR) out.push(`ERROR${span.status.message === undefined ? "" : ` ${span.status.message}`}`)
  return out.join(" · ")
}

/** The task's block for a terminal: header line, remote parent, span tree, problems. */
export const renderTree = (trace: TaskTrace): string => {
  const first = trace.spans[0]
  const last = trace.spans[trace.spans.length - 1]
  const total = first !== undefined && last !== undefined ? ` · ${formatMs(msBetween(last.endNs, first.startNs))}` : ""
  const state = trace.status === undefined ? "" : ` · ${trace.status}${trace.attempts === undefined ? "" : ` · attempts ${trace.attempts}`}`
  const lines = [
    `trace ${trace.traceId ?? "(none)"} · task ${trace.tenant}/${trace.taskId}${trace.command === undefined ? "" : ` · ${trace.command}`}${state}${total}${trace.closed ? "" : " · open"}${trace.continued ? " · continued" : ""}`
  ]
  if (trace.remoteParentSpanId !== undefined) lines.push(`  ↑ remote parent ${trace.remoteParentSpanId}`)
  const problemsAt = (seq: number | undefined) => trace.problems.filter((p) => p.seq === seq)
  const walk = (node: SpanNode, indent: string, branch: string, isLast: boolean) => {
    const offset = first === undefined ? 0 : msBetween(node.startTimeUnixNano, first.startNs)
    const span = trace.spans.find((s) => s.seq === node.seq)
    const label = `${indent}${branch}${node.name}`
    lines.push(`${label.padEnd(46)} +${formatMs(offset).padStart(12)}  ${formatMs(node.durationMs).padStart(11)}  ${span === undefined ? "" : details(span)}`.trimEnd())
    const childIndent = indent + (branch === "" ? "  " : isLast ? "   " : "│  ")
    for (const p of problemsAt(node.seq)) lines.push(`${childIndent}⚠ [${p.rule}] seq ${node.seq}: ${p.message}`)
    node.children.forEach((child, i) => walk(child, childIndent, i === node.children.length - 1 ? "└─ " : "├─ ", i === node.children.length - 1))
  }
  for (const root of spanForest(trace)) walk(root, "  ", "", true)
  // Problems of events without a span (no traceparent) and of the task as a whole.
  const spanSeqs = new Set(trace.spans.map((s) => s.seq))
  for (const p of trace.problems) if (p.seq === undefined || !spanSeqs.has(p.seq)) lines.push(`  ⚠ [${p.rule}]${p.seq === undefined ? "" : ` seq ${p.seq}`}: ${p.message}`)
  return lines.join("\n")
}
