/// <reference lib="dom" />
/**
 * A task's timeline: one row per event of its log, in log order, with what an operator asks of
 * each — when, which attempt, which worker, until when the lease ran, how long a retry waits, why,
 * and how the webhook went. Read from `GET /v1/codeq/tasks/:id/events`. For another tenant's task
 * (an admin may read any) a failure's error text is not shown: it is the task's result.
 */
import type { TaskEventRecord, TaskEvents } from "./api.js"
import { h, table } from "./dom.js"
import { formatTime } from "./format.js"

type Body = Readonly<Record<string, unknown>>

const bodyOf = (record: TaskEventRecord): Body => (typeof record.event === "object" && record.event !== null ? (record.event as Body) : {})
const text = (body: Body, key: string): string | undefined => (typeof body[key] === "string" ? body[key] : undefined)
const num = (body: Body, key: string): number | undefined => (typeof body[key] === "number" ? body[key] : undefined)

/** A tone per event type, shown as a coloured pill next to the (always written) type name. */
const TONE: Readonly<Record<string, string>> = {
  TaskCompleted: "ev-good",
  WebhookDelivered: "ev-good",
  TaskNacked: "ev-retry",
  TaskAbandoned: "ev-retry",
  TaskRequeued: "ev-retry",
  TaskFailed: "ev-bad",
  TaskDeadLettered: "ev-bad",
  TaskLeaseExpired: "ev-bad",
  TaskCancelled: "ev-bad",
  TaskPurged: "ev-bad",
  TaskRejected: "ev-bad",
  WebhookFailed: "ev-bad"
}

export interface TimelineRow {
  readonly seq: number
  readonly type: string
  readonly time: string
  readonly attempt: number | undefined
  readonly worker: string | undefined
  readonly leaseUntil: string | undefined
  readonly delay: string | undefined
  readonly reason: string | undefined
  readonly webhook: string | undefined
}

const HIDDEN = "(not shown: another tenant's task)"

/** The rows of a timeline; `owned` says whether the signed-in tenant owns the task. */
export const timelineRows = (events: TaskEvents, owned: boolean): ReadonlyArray<TimelineRow> => {
  let attempt: number | undefined
  return events.events.map((record) => {
    const e = bodyOf(record)
    let delay: string | undefined
    let reason = text(e, "reason")
    let webhook: string | undefined
    switch (record.type) {
      case "TaskCreated": {
        const runAt = text(e, "runAt")
        if (runAt !== undefined) delay = `until ${formatTime(runAt)}`
        break
      }
      case "TaskClaimed":
      case "TaskLeaseExpired":
        attempt = num(e, "attempt") ?? attempt
        break
      case "TaskNacked": {
        const seconds = num(e, "delaySeconds")
        if (seconds !== undefined) delay = `${seconds} s`
        break
      }
      case "TaskFailed":
        reason = owned ? text(e, "error") : HIDDEN
        break
      case "TaskRejected":
        reason = `${text(e, "field") ?? "?"}: ${text(e, "rule") ?? "?"}`
        break
      case "WebhookDelivered":
        webhook = `delivered · HTTP ${num(e, "statusCode") ?? "?"} · attempt ${num(e, "attempt") ?? "?"}`
        break
      case "WebhookFailed": {
        const status = num(e, "statusCode")
        webhook = [`failed: ${text(e, "error") ?? "?"}`, status !== undefined ? `HTTP ${status}` : undefined, `attempt ${num(e, "attempt") ?? "?"}`, e.final === true ? "final" : "will retry"]
          .filter((part) => part !== undefined)
          .join(" · ")
        break
      }
    }
    const row: TimelineRow = {
      seq: record.seq,
      type: record.type,
      time: record.time,
      attempt: record.type.startsWith("Webhook") || record.type === "TaskCreated" ? undefined : attempt,
      worker: text(e, "workerId"),
      leaseUntil: text(e, "leaseUntil"),
      delay,
      reason,
      webhook
    }
    // A requeued task starts counting its attempts again.
    if (record.type === "TaskRequeued") attempt = undefined
    return row
  })
}

const COLUMNS = [
  { label: "Seq", numeric: true },
  { label: "Event" },
  { label: "Time (UTC)" },
  { label: "Attempt", numeric: true },
  { label: "Worker" },
  { label: "Lease until" },
  { label: "Delay" },
  { label: "Reason" },
  { label: "Webhook" }
] as const

export const renderTimeline = (events: TaskEvents, owned: boolean): HTMLElement => {
  const rows = timelineRows(events, owned).map((row) =>
    h(
      "tr",
      { "data-event": row.type, "data-seq": row.seq },
      h("td", { class: "num" }, row.seq),
      h("td", {}, h("span", { class: `ev ${TONE[row.type] ?? ""}` }, row.type)),
      h("td", { class: "mono" }, h("time", { datetime: row.time }, formatTime(row.time))),
      h("td", { class: "num", "data-col": "attempt" }, row.attempt ?? ""),
      h("td", { class: "mono", "data-col": "worker" }, row.worker ?? ""),
      h("td", { class: "mono", "data-col": "lease" }, formatTime(row.leaseUntil)),
      h("td", { "data-col": "delay" }, row.delay ?? ""),
      h("td", { "data-col": "reason" }, row.reason ?? ""),
      h("td", { "data-col": "webhook" }, row.webhook ?? "")
    )
  )
  return rows.length === 0 ? h("p", { class: "empty" }, "No events.") : table(`${rows.length} events, in log order`, COLUMNS, rows)
}
