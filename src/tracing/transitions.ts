/**
 * Which tracer and span name perform each event, and the low-cardinality `codeq.*` attributes the
 * span carries (DESIGN §6). Never the payload, webhook URL, idempotency key or any secret.
 */
import { SpanStatusCode, type Attributes, type SpanStatus } from "@opentelemetry/api"
import type { TaskEvent, TaskState } from "../domain/events.js"
import { ATTR, SPANS, TRACERS } from "./conventions.js"

export interface SpanSpec {
  readonly tracer: string
  readonly name: string
  /** Built only when the span is recorded. */
  readonly attributes: () => Attributes
}

const byEvent: { readonly [K in TaskEvent["type"]]: readonly [tracer: string, name: string] } = {
  TaskCreated: [TRACERS.scheduler, SPANS.create],
  TaskClaimed: [TRACERS.repository, SPANS.claim],
  TaskHeartbeat: [TRACERS.repository, SPANS.heartbeat],
  TaskAbandoned: [TRACERS.repository, SPANS.abandon],
  TaskNacked: [TRACERS.repository, SPANS.nack],
  TaskLeaseExpired: [TRACERS.repository, SPANS.leaseExpired],
  TaskCompleted: [TRACERS.results, SPANS.submitResult],
  TaskFailed: [TRACERS.results, SPANS.submitResult],
  TaskDeadLettered: [TRACERS.repository, SPANS.deadLetter],
  TaskRequeued: [TRACERS.scheduler, SPANS.requeue],
  TaskCancelled: [TRACERS.scheduler, SPANS.cancel],
  TaskPurged: [TRACERS.scheduler, SPANS.purge],
  WebhookDelivered: [TRACERS.resultCallback, SPANS.webhook],
  WebhookFailed: [TRACERS.resultCallback, SPANS.webhook],
  TaskRejected: [TRACERS.scheduler, SPANS.create]
}

const eventAttributes = (e: TaskEvent): Attributes => {
  switch (e.type) {
    case "TaskCreated":
      return { [ATTR.command]: e.command, [ATTR.priority]: e.priority, [ATTR.hasWebhook]: e.webhook !== undefined, [ATTR.hasIdempotencyKey]: e.idempotencyKeyHash !== undefined }
    case "TaskClaimed":
      return { [ATTR.workerId]: e.workerId, [ATTR.attempt]: e.attempt, [ATTR.leaseSeconds]: Math.round((Date.parse(e.leaseUntil) - Date.parse(e.at)) / 1000) }
    case "TaskHeartbeat":
      return { [ATTR.workerId]: e.workerId, [ATTR.extendSeconds]: Math.round((Date.parse(e.leaseUntil) - Date.parse(e.at)) / 1000) }
    case "TaskNacked":
      return { [ATTR.workerId]: e.workerId, [ATTR.delaySeconds]: e.delaySeconds, [ATTR.reason]: e.reason }
    case "TaskCompleted":
      return { [ATTR.workerId]: e.workerId, [ATTR.status]: "COMPLETED" }
    case "TaskFailed":
      return { [ATTR.workerId]: e.workerId, [ATTR.status]: "FAILED" }
    case "TaskAbandoned":
      return { [ATTR.workerId]: e.workerId }
    case "TaskLeaseExpired":
      return { [ATTR.workerId]: e.workerId, [ATTR.attempt]: e.attempt }
    case "TaskDeadLettered":
    case "TaskRequeued":
    case "TaskCancelled":
    case "TaskPurged":
      return { [ATTR.reason]: e.reason }
    case "WebhookDelivered":
    case "WebhookFailed":
      return { [ATTR.webhookAttempt]: e.attempt }
    case "TaskRejected":
      return { [ATTR.reason]: e.rule }
  }
}

/**
 * The low-cardinality destination of an event subject `<root>.evt.<tenant>.<taskId>`: the
 * tenant's subject filter `<root>.evt.<tenant>.*` (the task id goes to `codeq.task_id`).
 */
export const eventDestination = (subject: string): string => `${subject.slice(0, subject.lastIndexOf(".") + 1)}*`

/** `messaging.destination.template` of every event subject. */
export const EVENT_DESTINATION_TEMPLATE = "{root}.evt.{tenant}.{task_id}"

/** The span that writes `event` to `subject`, for a task whose state before it is `state`. */
export const spanSpecFor = (event: TaskEvent, state: TaskState | null, subject: string): SpanSpec => {
  const [tracer, name] = byEvent[event.type]
  const attributes = (): Attributes => {
    const command = event.type === "TaskCreated" ? event.command : state?.command
    const out: Attributes = { [ATTR.tenantId]: event.tenant, [ATTR.taskId]: event.taskId }
    if (command !== undefined) out[ATTR.command] = command
    if (state !== null) {
      out[ATTR.priority] = state.priority
      out[ATTR.attempt] = state.attempts
    }
    Object.assign(out, eventAttributes(event))
    out[ATTR.event] = event.type
    out[ATTR.messagingSystem] = "nats"
    out[ATTR.messagingDestination] = eventDestination(subject)
    out[ATTR.messagingDestinationTemplate] = EVENT_DESTINATION_TEMPLATE
    out[ATTR.messagingOperationType] = "publish"
    return out
  }
  return { tracer, name, attributes }
}

/**
 * The status of the span that writes `event`: ERROR for the events that report a failure (a task
 * failed, dead-lettered or rejected, a webhook that failed), unset otherwise. The live span and
 * its replay take it from here, so they cannot differ.
 */
export const spanStatusOf = (event: TaskEvent): SpanStatus => {
  switch (event.type) {
    case "TaskFailed":
      return { code: SpanStatusCode.ERROR, message: "task failed" }
    case "TaskDeadLettered":
      return { code: SpanStatusCode.ERROR, message: `dead-lettered: ${event.reason}` }
    case "TaskRejected":
      return { code: SpanStatusCode.ERROR, message: `rejected: ${event.field} ${event.rule}` }
    case "WebhookFailed":
      return { code: SpanStatusCode.ERROR, message: event.error }
    default:
      return { code: SpanStatusCode.UNSET }
  }
}
