/**
 * Result webhooks (DESIGN §4): on a terminal event of a task with a webhook, POST codeQ's result
 * payload from a `codeq.webhook.task_result` span parented on the span that wrote the terminal
 * event, with that span's context injected, and append the outcome (WebhookDelivered or
 * WebhookFailed) from the same span. A failed attempt asks the runtime for the event again after
 * the backoff: the retry lives in the JetStream consumer, so a broker restart resumes it.
 * The attempt number comes from the log, so it is exact across restarts too.
 */
import { SpanStatusCode } from "@opentelemetry/api"
import { Effect } from "effect"
import { TERMINAL, fold, type StoredEvent } from "../src/domain/events.js"
import type { TaskRepository } from "../src/tasks/repository.js"
import { contextFromTraceparent } from "../src/tracing/codec.js"
import { ATTR, SPANS, TRACERS } from "../src/tracing/conventions.js"
import { DELIVERY_ID_HEADER, deliverWebhook, deliveryId, webhookBackoffSeconds, type WebhookSettings } from "../src/webhooks/deliver.js"
import { ProjectionError, RetryLater, type Projection } from "./runtime.js"

/** What happened to one terminal event's webhook in this call. */
type Step = "none" | "delivered" | "failed_final" | { readonly retryInSeconds: number }

const attemptOnce = async (repo: TaskRepository, settings: WebhookSettings, stored: StoredEvent): Promise<Step> => {
  const { tenant, taskId } = stored.event
  const history = await repo.log.readTask(tenant, taskId)
  const state = fold(history.events)
  const snapshot = { state, version: history.version }
  if (state === null || state.webhook === undefined || state.webhookDelivered || !TERMINAL.has(state.status)) return "none"
  // Only the latest terminal event is delivered (a requeued dead letter ends again later).
  const lastTerminal = [...history.events].reverse().find((e) => ["TaskCompleted", "TaskFailed", "TaskDeadLettered"].includes(e.event.type))
  if (lastTerminal?.seq !== stored.seq) return "none"
  const failures = history.events.filter((e) => e.seq > stored.seq && e.event.type === "WebhookFailed")
  if (failures.some((e) => e.event.type === "WebhookFailed" && e.event.final)) return "none"
  const attempt = failures.length + 1

  const parent = contextFromTraceparent(stored.trace?.traceparent, stored.trace?.tracestate)
  const span = repo.telemetry.startTransition(TRACERS.resultCallback, SPANS.webhook, parent, {
    [ATTR.webhookAttempt]: attempt,
    [ATTR.webhookHost]: new URL(state.webhook).hostname,
    [ATTR.taskId]: taskId,
    [ATTR.tenantId]: tenant,
    [ATTR.command]: state.command
  })
  const body = JSON.stringify({
    taskId,
    eventType: state.command,
    status: state.status,
    result: state.result ?? null,
    error: state.error ?? null,
    artifacts: state.artifacts ?? null,
    completedAt: stored.event.at
  })
  const headers: Record<string, string> = { traceparent: span.trace.traceparent, [DELIVERY_ID_HEADER]: deliveryId(taskId, stored.seq) }
  if (span.trace.tracestate !== undefined) headers.tracestate = span.trace.tracestate
  const outcome = await deliverWebhook(state.webhook, body, headers, settings)
  const final = !outcome.delivered && (outcome.permanent || attempt >= settings.maxAttempts)
  if (!outcome.delivered) span.span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.error })
  span.span.setAttribute("http.response.status_code", outcome.statusCode ?? 0)
  const applied = await repo.apply(
    tenant,
    taskId,
    (now) => ({
      type: "RecordWebhook",
      taskId,
      tenant,
      now,
      attempt,
      delivered: outcome.delivered,
      statusCode: outcome.statusCode,
      error: outcome.delivered ? undefined : outcome.error,
      final
    }),
    { known: snapshot, span }
  )
  if (!applied.ok) {
    span.span.end()
    return "none"
  }
  if (outcome.delivered) return "delivered"
  return final ? "failed_final" : { retryInSeconds: webhookBackoffSeconds(settings, attempt) }
}

export const webhooks = (repo: TaskRepository, settings: WebhookSettings): Projection => ({
  name: "webhooks",
  handles: ["TaskCompleted", "TaskFailed", "TaskDeadLettered"],
  concurrency: 64,
  // An attempt takes at most the connect and response timeouts, plus the log reads and append.
  ackWaitMs: settings.connectTimeoutMs + settings.responseTimeoutMs + 5_000,
  handle: (stored) =>
    Effect.tryPromise({
      try: () => attemptOnce(repo, settings, stored),
      catch: (cause) => new ProjectionError({ projection: "webhooks", message: "webhook attempt failed", cause })
    }).pipe(
      Effect.flatMap((step) =>
        typeof step === "object" ? Effect.fail(new RetryLater({ delayMs: step.retryInSeconds * 1000, reason: "webhook failed" })) : Effect.void
      )
    )
})
