/// <reference lib="dom" />
/**
 * The operator page's entry module (loaded by the shell at /ui): sign-in, search, the task view
 * and the queue overview, wired to the API client. State lives in this module only — the session
 * and the token (inside the client) are gone when the tab reloads or the user signs out.
 */
import { ApiClient, ApiError, type DeadLetterEntry, type UiSession } from "./api.js"
import { byId, h, show } from "./dom.js"
import { TRACE_ID, UUID, formatTime } from "./format.js"
import { renderDeadLetters, renderQueues } from "./queues.js"
import { renderTask } from "./task.js"

const api = new ApiClient()
let session: UiSession | undefined
let openTaskId: string | undefined
/** Dead letters requeued or purged here, by task id and dead-letter time: the read model trails. */
const handled = new Map<string, string>()

const ui = {
  status: byId("status", HTMLParagraphElement),
  signIn: byId("sign-in", HTMLElement),
  signInForm: byId("sign-in-form", HTMLFormElement),
  token: byId("token", HTMLInputElement),
  signInError: byId("sign-in-error", HTMLParagraphElement),
  identity: byId("identity", HTMLDivElement),
  identityText: byId("identity-text", HTMLSpanElement),
  signOut: byId("sign-out", HTMLButtonElement),
  app: byId("app", HTMLDivElement),
  searchForm: byId("search-form", HTMLFormElement),
  searchKind: byId("search-kind", HTMLSelectElement),
  searchValue: byId("search-value", HTMLInputElement),
  searchError: byId("search-error", HTMLParagraphElement),
  matches: byId("matches", HTMLDivElement),
  task: byId("task", HTMLElement),
  taskTitle: byId("task-title", HTMLHeadingElement),
  taskBody: byId("task-body", HTMLDivElement),
  queuesBody: byId("queues-body", HTMLDivElement),
  queuesRefresh: byId("queues-refresh", HTMLButtonElement)
}

const say = (message: string): void => {
  ui.status.textContent = message
}

const describe = (error: unknown): string => {
  if (error instanceof ApiError) {
    if (error.status === 401) return `The token was refused: ${error.message}.`
    if (error.status === 403) return `This token may not do that: ${error.message}.`
    if (error.status === 429) return "Rate limited: try again in a moment."
    if (error.status === 503) return `The broker is unavailable: ${error.message}.`
    return error.message
  }
  return error instanceof Error ? error.message : String(error)
}

/** Runs an event handler, reporting its failure in `where` (a 401 signs out: the token is gone). */
const guarded = (where: HTMLElement, action: () => Promise<void>) => (): void => {
  where.textContent = ""
  action().catch((error: unknown) => {
    if (error instanceof ApiError && error.status === 401 && session !== undefined) signOut("The token is no longer accepted; sign in again.")
    else where.textContent = describe(error)
  })
}

const showTask = async (id: string): Promise<void> => {
  if (session === undefined) return
  const own = session
  say(`Loading task ${id}…`)
  const [task, events, trace] = await Promise.all([
    // Another tenant's task is a 404 here even for an admin, whose events and trace reads it may see.
    api.task(id).catch((error: unknown) => {
      if (error instanceof ApiError && error.status === 404) return undefined
      throw error
    }),
    api.events(id),
    api.trace(id)
  ]).catch((error: unknown) => {
    say("")
    if (error instanceof ApiError && error.status === 404) throw new Error(`No task ${id} in tenant ${own.tenant}.`)
    throw error
  })
  if (session !== own) return
  openTaskId = id
  ui.taskTitle.textContent = `Task ${id}`
  show(ui.taskBody, ...renderTask({ id, task, events, trace }, own))
  ui.task.hidden = false
  say(`Task ${id}: ${events.events.length} events, status ${task?.status ?? trace.status ?? "unknown"}.`)
}

const search = async (): Promise<void> => {
  if (session === undefined) return
  const kind = ui.searchKind.value
  const value = ui.searchValue.value.trim()
  ui.matches.replaceChildren()
  if (kind === "task") {
    if (!UUID.test(value.toLowerCase())) throw new Error("A task id is a UUID, e.g. 0b8f2c1e-8d7a-4f3e-9c2b-5a1d3e4f6a7b.")
    return showTask(value.toLowerCase())
  }
  if (kind === "trace") {
    const traceId = value.toLowerCase()
    if (!TRACE_ID.test(traceId)) throw new Error("A trace id is 32 hex digits, not all zero.")
    const tasks = await api.tasksOfTrace(traceId)
    if (tasks.length === 0) throw new Error(`No task of trace ${traceId} in tenant ${session.tenant} (the task list trails the log by a moment).`)
    const [only] = tasks
    if (tasks.length === 1 && only !== undefined) return showTask(only.id)
    show(
      ui.matches,
      h("p", {}, `${tasks.length} tasks of trace ${traceId}:`),
      h(
        "ul",
        {},
        ...tasks.map((t) => {
          const open = h("button", { type: "button", class: "link" }, t.id)
          open.addEventListener("click", guarded(ui.searchError, () => showTask(t.id)))
          return h("li", {}, open, ` ${t.command} · ${t.status} · created ${formatTime(t.createdAt)}`)
        })
      )
    )
    return
  }
  if (value === "") throw new Error("Enter the idempotency key the task was created with.")
  const task = await api.byIdempotencyKey(value).catch((error: unknown) => {
    if (error instanceof ApiError && error.status === 404) throw new Error(`No task with this idempotency key in tenant ${session?.tenant ?? ""}.`)
    throw error
  })
  return showTask(task.id)
}

const requeue = async (entry: DeadLetterEntry, row: HTMLTableRowElement): Promise<void> => {
  const buttons = row.querySelectorAll("button")
  buttons.forEach((button) => (button.disabled = true))
  try {
    await api.requeue(entry.taskId)
  } finally {
    buttons.forEach((button) => (button.disabled = false))
  }
  handled.set(entry.taskId, entry.deadLetteredAt)
  row.remove()
  say(`Requeued task ${entry.taskId}: it is back in its queue with its attempts reset.`)
  if (openTaskId === entry.taskId) await showTask(entry.taskId)
  await loadQueues(false)
}

const purge = async (entry: DeadLetterEntry, row: HTMLTableRowElement): Promise<void> => {
  if (!window.confirm(`Purge task ${entry.taskId} for good? It leaves the dead-letter queue and is never run again.`)) return
  await api.purge(entry.taskId)
  handled.set(entry.taskId, entry.deadLetteredAt)
  row.remove()
  say(`Purged task ${entry.taskId}.`)
  await loadQueues(false)
}

async function loadQueues(announce = true): Promise<void> {
  if (session === undefined) return
  if (!session.admin) {
    show(ui.queuesBody, h("p", { class: "note", "data-queues": "needs-admin" }, "The queue overview and the dead-letter queue need a token with the scope codeq:admin."))
    ui.queuesRefresh.hidden = true
    return
  }
  ui.queuesRefresh.hidden = false
  const [overview, deadLetters] = await Promise.all([api.queues(), api.deadLetters()])
  const pending = deadLetters.filter((entry) => handled.get(entry.taskId) !== entry.deadLetteredAt)
  const actions = { open: (id: string) => guarded(ui.searchError, () => showTask(id))(), requeue: (e: DeadLetterEntry, r: HTMLTableRowElement) => guarded(ui.queuesBody, () => requeue(e, r))(), purge: (e: DeadLetterEntry, r: HTMLTableRowElement) => guarded(ui.queuesBody, () => purge(e, r))() }
  show(ui.queuesBody, renderQueues(overview), h("h3", {}, "Dead letters"), renderDeadLetters(pending, actions))
  if (announce) say(`Queues of tenant ${session.tenant}: ${overview.totals.ready} ready, ${overview.totals.delayed} delayed, ${overview.totals.inProgress} in progress, ${overview.totals.deadLettered} dead letters.`)
}

const signedIn = (who: UiSession): void => {
  session = who
  ui.identityText.textContent = `tenant ${who.tenant} · ${who.role}${who.subject !== undefined ? ` · ${who.subject}` : ""}`
  ui.identity.hidden = false
  ui.signIn.hidden = true
  ui.app.hidden = false
  ui.searchValue.focus()
}

function signOut(message = "Signed out."): void {
  api.signOut()
  session = undefined
  openTaskId = undefined
  handled.clear()
  for (const element of [ui.matches, ui.taskBody, ui.queuesBody]) element.replaceChildren()
  for (const element of [ui.searchError, ui.signInError]) element.textContent = ""
  ui.searchValue.value = ""
  ui.task.hidden = true
  ui.app.hidden = true
  ui.identity.hidden = true
  ui.signIn.hidden = false
  say(message)
  ui.token.focus()
}

ui.signInForm.addEventListener("submit", (event) => {
  event.preventDefault()
  const token = ui.token.value
  // The field is cleared at once: from here on the token lives in the API client only.
  ui.token.value = ""
  guarded(ui.signInError, async () => {
    signedIn(await api.signIn(token))
    say(`Signed in to tenant ${session?.tenant ?? ""}.`)
    await loadQueues(false)
  })()
})

ui.searchForm.addEventListener("submit", (event) => {
  event.preventDefault()
  guarded(ui.searchError, search)()
})

ui.signOut.addEventListener("click", () => signOut())
ui.queuesRefresh.addEventListener("click", guarded(ui.queuesBody, () => loadQueues()))
document.documentElement.dataset.ready = "true"
