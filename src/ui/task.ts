/// <reference lib="dom" />
/**
 * One task on the page: what it is (summary), what happened to it (timeline) and the trace the
 * log holds of it (span tree). The payload, webhook URL, result and error are shown only when the
 * signed-in tenant owns the task: an admin token may read another tenant's events and trace, and
 * then sees the task's course, not its contents.
 */
import type { TaskEvents, TaskTrace, TaskView, UiSession } from "./api.js"
import { h, type Child } from "./dom.js"
import { formatTime } from "./format.js"
import { renderTimeline } from "./timeline.js"
import { renderTrace } from "./tree.js"

export interface TaskDetails {
  readonly id: string
  /** From `GET /v1/codeq/tasks/:id`: absent for another tenant's task. */
  readonly task: TaskView | undefined
  readonly events: TaskEvents
  readonly trace: TaskTrace
}

/** A link to the trace in Jaeger's UI, when the broker names one (http or https only). */
export const jaegerLink = (base: string | undefined, traceId: string | undefined): HTMLAnchorElement | undefined => {
  if (base === undefined || traceId === undefined || !URL.canParse(base)) return undefined
  const url = new URL(`trace/${traceId}`, base.endsWith("/") ? base : `${base}/`)
  if (url.protocol !== "http:" && url.protocol !== "https:") return undefined
  return h("a", { href: url.href, target: "_blank", rel: "noopener noreferrer", "data-jaeger": "" }, "Open in Jaeger")
}

const json = (value: unknown): string => (value === undefined ? "" : JSON.stringify(value, null, 2))

const entry = (term: string, ...value: ReadonlyArray<Child>): Array<HTMLElement> => [h("dt", {}, term), h("dd", { "data-field": term }, ...value)]

const contents = (task: TaskView): Array<HTMLElement> => [
  ...(task.webhook !== undefined ? entry("webhook", h("span", { class: "mono" }, task.webhook)) : []),
  ...entry("payload", h("details", {}, h("summary", {}, "show"), h("pre", { class: "mono" }, json(task.payload)))),
  ...(task.result !== undefined ? entry("result", h("details", {}, h("summary", {}, "show"), h("pre", { class: "mono" }, json(task.result)))) : []),
  ...(task.error !== undefined ? entry("error", task.error) : [])
]

const summary = (details: TaskDetails, owned: boolean, jaeger: HTMLAnchorElement | undefined): HTMLElement => {
  const { task, trace, events } = details
  const attempts = task !== undefined ? `${task.attempts} of ${task.maxAttempts}` : trace.attempts !== undefined ? String(trace.attempts) : "?"
  return h(
    "dl",
    { class: "summary" },
    ...entry("task id", h("span", { class: "mono" }, details.id)),
    ...entry("tenant", events.tenant),
    ...entry("command", h("span", { class: "mono" }, task?.command ?? trace.command ?? "?")),
    ...entry("status", task?.status ?? trace.status ?? "?"),
    ...entry("attempts", attempts),
    ...(task !== undefined ? entry("priority", String(task.priority)) : []),
    ...(task !== undefined ? entry("created", formatTime(task.createdAt)) : []),
    ...(task !== undefined ? entry("updated", formatTime(task.updatedAt)) : []),
    ...(task?.workerId !== undefined ? entry("worker", h("span", { class: "mono" }, task.workerId)) : []),
    ...(task?.status === "IN_PROGRESS" && task.leaseUntil !== undefined ? entry("lease until", formatTime(task.leaseUntil)) : []),
    ...(task?.runAt !== undefined ? entry("run at", formatTime(task.runAt)) : []),
    ...entry("trace id", h("span", { class: "mono" }, trace.traceId ?? "unknown"), jaeger === undefined ? undefined : " ", jaeger),
    ...(owned && task !== undefined ? contents(task) : [])
  )
}

/** The task's section: summary, timeline, span tree. */
export const renderTask = (details: TaskDetails, session: UiSession): Array<HTMLElement> => {
  const owned = details.events.tenant === session.tenant && details.task !== undefined
  return [
    ...(owned
      ? []
      : [h("p", { class: "note", "data-foreign": details.events.tenant }, `This task belongs to tenant ${details.events.tenant}. Its payload, webhook, result and error are not shown.`)]),
    summary(details, owned, jaegerLink(session.jaegerUrl, details.trace.traceId)),
    h("h3", { id: "timeline-title" }, "Timeline"),
    h("div", { id: "timeline", role: "region", "aria-labelledby": "timeline-title" }, renderTimeline(details.events, owned)),
    h("h3", { id: "tree-title" }, "Span tree (rebuilt from the log)"),
    h("div", { id: "tree", role: "region", "aria-labelledby": "tree-title" }, renderTrace(details.trace, owned, jaegerLink(session.jaegerUrl, details.trace.traceId)))
  ]
}
