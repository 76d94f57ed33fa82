/**
 * Span names, tracer names, attribute keys and log header names: codeQ's published tracing
 * conventions (DESIGN §6) and the log's header contract (DESIGN §2), in one place.
 */

export const TRACERS = {
  scheduler: "codeq/scheduler",
  repository: "codeq/repository",
  results: "codeq/results",
  resultCallback: "codeq/result_callback",
  worker: "codeq/worker",
  projections: "codeq/projections"
} as const

export const SPANS = {
  create: "codeq.task.create",
  claim: "codeq.task.claim",
  heartbeat: "codeq.task.heartbeat",
  abandon: "codeq.task.abandon",
  nack: "codeq.task.nack",
  submitResult: "codeq.task.submit_result",
  webhook: "codeq.webhook.task_result",
  /** Spans for transitions codeQ has no name for (lease expiry, dead letter, cancel, requeue). */
  leaseExpired: "codeq.task.lease_expired",
  deadLetter: "codeq.task.dead_letter",
  cancel: "codeq.task.cancel",
  requeue: "codeq.task.requeue",
  purge: "codeq.task.purge",
  process: "codeq.task.process"
} as const

export const ATTR = {
  command: "codeq.command",
  priority: "codeq.priority",
  hasWebhook: "codeq.has_webhook",
  hasIdempotencyKey: "codeq.has_idempotency_key",
  tenantId: "codeq.tenant_id",
  taskId: "codeq.task_id",
  workerId: "codeq.worker_id",
  leaseSeconds: "codeq.lease_seconds",
  attempt: "codeq.attempt",
  extendSeconds: "codeq.extend_seconds",
  delaySeconds: "codeq.delay_seconds",
  reason: "codeq.reason",
  status: "codeq.status",
  event: "codeq.event",
  webhookAttempt: "codeq.webhook.attempt",
  webhookHost: "codeq.webhook.host",
  messagingSystem: "messaging.system",
  messagingDestination: "messaging.destination.name",
  messagingDestinationTemplate: "messaging.destination.template",
  messagingOperationType: "messaging.operation.type"
} as const

/** Headers every event carries. Ours never start with `Nats-` (reserved by the server). */
export const HEADERS = {
  event: "Codeq-Event",
  traceparent: "traceparent",
  tracestate: "tracestate",
  /** W3C baggage the create received, on the TaskCreated only: sent again on the webhook. */
  baggage: "baggage",
  parentSpan: "Codeq-Parent-Span",
  spanStart: "Codeq-Span-Start",
  /**
   * End of the writing span, unix epoch nanoseconds: stamped as the event is handed to the log and
   * given to the live span as its end, so replay rebuilds the end exactly (older events without
   * it end at the log's timestamp).
   */
  spanEnd: "Codeq-Span-End",
  /** The task's event sequence this event was appended after: lets readers detect gaps. */
  prevSeq: "Codeq-Prev-Seq"
} as const
