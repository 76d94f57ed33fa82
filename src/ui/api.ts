/// <reference lib="dom" />
/**
 * The page's API client: the bearer token the user signed in with, held in a private field of
 * this object and nowhere else (no storage, no cookie, no URL), sent on every call to the broker
 * that served the page. The API does the access control — tenant from the token, scopes for the
 * admin routes — so the page can only show what the token may read.
 *
 * The response types are the server's own (type-only imports: nothing of the server is loaded).
 */
import type { DeadLetterEntry } from "../tasks/view.js"
import type { TaskEventsJson, TaskTraceJson } from "../http/tracesRoutes.js"
import type { UiSession } from "../http/uiRoutes.js"
import type { QueueOverview } from "../tasks/queues.js"
import type { TaskView } from "../tasks/view.js"

export type { DeadLetterEntry, QueueOverview, TaskView, UiSession }
export type TaskEvents = typeof TaskEventsJson.Type
export type TaskEventRecord = TaskEvents["events"][number]
export type TaskTrace = typeof TaskTraceJson.Type
export type TraceSpan = TaskTrace["spans"][number]

/** An answer other than 2xx: the status and the API's `error` text. */
export class ApiError extends Error {
  override readonly name = "ApiError"
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message)
  }
}

const API = "/v1/codeq"

export class ApiClient {
  #token: string | undefined

  /** Checks the token with the API and keeps it (in memory) when it is accepted. */
  async signIn(token: string): Promise<UiSession> {
    this.#token = token.trim()
    try {
      return await this.call<UiSession>("GET", "/ui/session")
    } catch (error) {
      this.#token = undefined
      throw error
    }
  }

  signOut(): void {
    this.#token = undefined
  }

  task(id: string): Promise<TaskView> {
    return this.call("GET", `/tasks/${encodeURIComponent(id)}`)
  }

  events(id: string): Promise<TaskEvents> {
    return this.call("GET", `/tasks/${encodeURIComponent(id)}/events`)
  }

  trace(id: string): Promise<TaskTrace> {
    return this.call("GET", `/tasks/${encodeURIComponent(id)}/trace`)
  }

  async tasksOfTrace(traceId: string): Promise<ReadonlyArray<TaskView>> {
    return (await this.call<{ tasks: ReadonlyArray<TaskView> }>("GET", `/tasks?traceId=${encodeURIComponent(traceId)}&limit=50`)).tasks
  }

  /** The task created with this idempotency key; the key travels in the body only. */
  byIdempotencyKey(idempotencyKey: string): Promise<TaskView> {
    return this.call("POST", "/tasks/lookup", { idempotencyKey })
  }

  queues(): Promise<QueueOverview> {
    return this.call("GET", "/admin/queues")
  }

  async deadLetters(): Promise<ReadonlyArray<DeadLetterEntry>> {
    return (await this.call<{ items: ReadonlyArray<DeadLetterEntry> }>("GET", "/admin/dlq")).items
  }

  requeue(id: string): Promise<TaskView> {
    return this.call("POST", `/admin/dlq/${encodeURIComponent(id)}/requeue`)
  }

  async purge(id: string): Promise<void> {
    await this.call("DELETE", `/admin/dlq/${encodeURIComponent(id)}`)
  }

  private async call<T>(method: "GET" | "POST" | "DELETE", path: string, body?: unknown): Promise<T> {
    if (this.#token === undefined) throw new ApiError(401, "not signed in")
    let response: Response
    try {
      response = await fetch(`${API}${path}`, {
        method,
        headers: { Authorization: `Bearer ${this.#token}`, ...(body !== undefined ? { "Content-Type": "application/json" } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        cache: "no-store",
        credentials: "omit"
      })
    } catch {
      throw new ApiError(0, "the broker does not answer")
    }
    const text = await response.text()
    let json: unknown = undefined
    try {
      json = text === "" ? undefined : JSON.parse(text)
    } catch {
      // Not JSON: reported below by status.
    }
    if (!response.ok) {
      const message = typeof json === "object" && json !== null && "error" in json && typeof json.error === "string" ? json.error : `HTTP ${response.status}`
      throw new ApiError(response.status, message)
    }
    return json as T
  }
}
