/**
 * A task's trace block with every span rebuilt (spans.ts) and its chain audited: what the tree,
 * JSON lines, OTLP outputs and the HTTP trace route show.
 */
import type { AuditOptions } from "./audit.js"
import type { LogRecord, ReplaySpan, TaskTrace } from "./model.js"
import { taskOfSubject } from "../eventlog/window/records.js"
import { foldRecords, rebuildSpans } from "./spans.js"
import { auditFragment, createOf, type Fragment } from "./tasks.js"

/** The trace block of a fragment, spans rebuilt and audited; `prefix` are the task's earlier events. */
export const buildTaskTrace = (fragment: Fragment, prefix: ReadonlyArray<LogRecord>, audit: AuditOptions = {}): TaskTrace<ReplaySpan> => {
  const records = fragment.records
  const { tenant, taskId } = taskOfSubject(fragment.subject)
  const create = createOf(records) ?? createOf(prefix)
  const audited = auditFragment(fragment, prefix, audit)
  const rebuilt = rebuildSpans(records, prefix.length === 0 ? null : foldRecords(prefix))
  const state = rebuilt.state
  return {
    tenant,
    taskId,
    subject: fragment.subject,
    traceId: create?.traceId ?? rebuilt.spans[0]?.traceId,
    remoteParentSpanId: create?.traceId === undefined ? undefined : create.parentSpanId,
    command: state?.command,
    status: state?.status,
    attempts: state?.attempts,
    spans: rebuilt.spans,
    untraced: rebuilt.untraced,
    problems: audited.problems,
    closed: fragment.closed,
    continued: audited.continued
  }
}
