/// <reference lib="dom" />
/**
 * The queue overview (admins: `GET /v1/codeq/admin/queues`): per command and priority lane, how
 * many tasks are ready, delayed and in progress, and the dead letters; then the dead-letter queue
 * (`GET /v1/codeq/admin/dlq`) with requeue and purge per task. Counts come from the read model,
 * written up to the log's end when asked (TaskOperations.readModelWritten).
 */
import type { DeadLetterEntry, QueueOverview } from "./api.js"
import { h, table } from "./dom.js"
import { formatTime } from "./format.js"

const COUNT_COLUMNS = [
  { label: "Command" },
  { label: "Lane" },
  { label: "Ready", numeric: true },
  { label: "Delayed", numeric: true },
  { label: "In progress", numeric: true },
  { label: "Dead letters", numeric: true }
] as const

const counts = (c: { readonly ready: number; readonly delayed: number; readonly inProgress: number }, deadLettered: number | undefined) => [
  h("td", { class: "num", "data-col": "ready" }, c.ready),
  h("td", { class: "num", "data-col": "delayed" }, c.delayed),
  h("td", { class: "num", "data-col": "inProgress" }, c.inProgress),
  h("td", { class: "num", "data-col": "deadLettered" }, deadLettered ?? "")
]

export const renderQueues = (overview: QueueOverview): HTMLElement => {
  if (overview.commands.length === 0) return h("p", { class: "empty" }, "No queued, running or dead-lettered task in this tenant.")
  const rows: Array<HTMLTableRowElement> = []
  for (const queue of overview.commands) {
    rows.push(h("tr", { "data-command": queue.command, "data-lane": "all" }, h("th", { scope: "row", class: "mono" }, queue.command), h("td", {}, "all lanes"), ...counts(queue, queue.deadLettered)))
    const lanes = Object.entries(queue.lanes).sort(([a], [b]) => Number(b) - Number(a))
    for (const [lane, laneCounts] of lanes)
      rows.push(h("tr", { class: "lane", "data-command": queue.command, "data-lane": lane }, h("td", {}, queue.command), h("td", {}, `priority ${lane}`), ...counts(laneCounts, undefined)))
  }
  rows.push(h("tr", { class: "total", "data-lane": "total" }, h("td", {}, "All commands"), h("td", {}, ""), ...counts(overview.totals, overview.totals.deadLettered)))
  return table("Tasks per command and priority lane (from the read model)", COUNT_COLUMNS, rows)
}

export interface DeadLetterActions {
  readonly open: (taskId: string) => void
  readonly requeue: (entry: DeadLetterEntry, row: HTMLTableRowElement) => void
  readonly purge: (entry: DeadLetterEntry, row: HTMLTableRowElement) => void
}

const DLQ_COLUMNS = [{ label: "Task" }, { label: "Command" }, { label: "Reason" }, { label: "Attempts", numeric: true }, { label: "Dead-lettered (UTC)" }, { label: "Actions" }] as const

export const renderDeadLetters = (items: ReadonlyArray<DeadLetterEntry>, actions: DeadLetterActions): HTMLElement => {
  if (items.length === 0) return h("p", { class: "empty", "data-dlq": "empty" }, "The dead-letter queue is empty.")
  const rows = items.map((entry) => {
    const open = h("button", { type: "button", class: "link", title: entry.taskId }, entry.taskId)
    const requeue = h("button", { type: "button", "aria-label": `Requeue task ${entry.taskId}`, "data-action": "requeue" }, "Requeue")
    const purge = h("button", { type: "button", class: "danger", "aria-label": `Purge task ${entry.taskId}`, "data-action": "purge" }, "Purge")
    const row = h(
      "tr",
      { "data-task-id": entry.taskId },
      h("td", {}, open),
      h("td", { class: "mono" }, entry.command),
      h("td", {}, entry.reason),
      h("td", { class: "num" }, entry.attempts),
      h("td", { class: "mono" }, formatTime(entry.deadLetteredAt)),
      h("td", {}, requeue, " ", purge)
    )
    open.addEventListener("click", () => actions.open(entry.taskId))
    requeue.addEventListener("click", () => actions.requeue(entry, row))
    purge.addEventListener("click", () => actions.purge(entry, row))
    return row
  })
  return table(`Dead-letter queue: ${items.length} task${items.length === 1 ? "" : "s"}, oldest first`, DLQ_COLUMNS, rows)
}
