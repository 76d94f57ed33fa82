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

/** Writes the attributes particular to the event's type into `out`. */
const addEventAttributes = (out: Attributes, e: TaskEvent): void => {
  switch (e.type) {
    case "TaskCreated":
      out[ATTR.command] = e.command
      out[ATTR.priority] = e.priority
      out[ATTR.hasWebhook] = e.webhook !== undefined
      out[ATTR.hasIdempotencyKey] = e.idempotencyKeyHash !== undefined
      return
    case "TaskClaimed":
      out[ATTR.workerId] = e.workerId
      out[ATTR.attempt] = e.attempt
      out[ATTR.leaseSeconds] = Math.round((Date.parse(e.leaseUntil) - Date.parse(e.at)) / 1000)
      return
    case "TaskHeartbeat":
      out[ATTR.workerId] = e.workerId
      out[ATTR.extendSeconds] = Math.round((Date.parse(e.leaseUntil) - Date.parse(e.at)) / 1000)
      return
    case "TaskNacked":
      out[ATTR.workerId] = e.workerId
      out[ATTR.delaySeconds] = e.delaySeconds
      out[ATTR.reason] = e.reason
      return
    case "TaskCompleted":
      out[ATTR.workerId] = e.workerId
      out[ATTR.status] = "COMPLETED"
      return
    case "TaskFailed":
      out[ATTR.workerId] = e.workerId
      out[ATTR.status] = "FAILED"
      return
    case "TaskAbandoned":
      out[ATTR.workerId] = e.workerId
      return
    case "TaskLeaseExpired":
      out[ATTR.workerId] = e.workerId
      out[ATTR.attempt] = e.attempt
      return
    case "TaskDeadLettered":
    case "TaskRequeued":
    case "TaskCancelled":
    case "TaskPurged":
      out[ATTR.reason] = e.reason
      return
    case "WebhookDelivered":
    case "WebhookFailed":
      out[ATTR.webhookAttempt] = e.attempt
      return
    case "TaskRejected":
      out[ATTR.reason] = e.rule
      return
  }
}

/**
 * The low-cardinality destination of an event subject `<root>.evt.<tenant>.<taskId>`: the
 * tenant's subject filter `<root>.evt.<tenant>.*` (the task id goes to `codeq.task_id`).
 */
export const eventDestination = (subject: string): string => {
  const length = subject.lastIndexOf(".") + 1
  // Every event of a tenant has the same one: the last is given again, not made again per span.
  if (length !== lastPrefix.length || !subject.startsWith(lastPrefix)) {
    lastPrefix = subject.slice(0, length)
    lastDestination = `${lastPrefix}*`
  }
  return lastDestination
}
let lastPrefix = "\u0000"
let lastDestination = ""

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
    addEventAttributes(out, event)
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
