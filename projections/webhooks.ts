/**
 * Result webhooks (DESIGN §4), in two parts.
 *
 * The outbox sink: on a terminal event (TaskCompleted, TaskFailed, TaskDeadLettered) of a task that
 * has a webhook not yet delivered, put a delivery job on the webhook outbox stream (work queue,
 * message id from the event, so a replay adds nothing). Tasks without a webhook cost nothing here.
 *
 * The deliveries: every broker pulls jobs from the outbox's one durable consumer. A job carries the
 * task's state as of its terminal event, without its payload (when the job stays under
 * JOB_SNAPSHOT_MAX_BYTES), so an attempt reads only what the task's subject holds after that event
 * — one direct get, nothing in the common case, and then the snapshot is the task as it is now, on
 * its first attempt. A job's first delivery for a task that completed or failed after its term
 * began (`fresh`) does not even read that: nothing but this job's own attempts can follow such an
 * event, and none was made yet. Anything after it (a failed attempt, a requeue), or a job without
 * a snapshot, reads the whole history, which gives the exact attempt number. The attempt POSTs
 * codeQ's result payload from a `codeq.webhook.task_result` span parented on the span that wrote
 * the terminal event (its context injected, with an `X-CodeQ-Delivery-Id` stable across retries),
 * and appends the outcome, WebhookDelivered or WebhookFailed, from the same span. A failed attempt
 * naks the job with the backoff: the retry lives in the consumer, so it survives a broker restart.
 * The attempt number comes from the log, so it is exact across restarts.
 * A POST is at least once: a broker killed between the POST and the outcome's append sends it again.
 */
import { SpanStatusCode, trace } from "@opentelemetry/api"
import { SETTLED } from "../src/domain/decide.js"
import { TERMINAL, fold, type StoredEvent, type TaskState } from "../src/domain/events.js"
import { dedupHeaders, type PipelinedPublisher } from "../src/eventlog/pipeline.js"
import type { Connection } from "../src/eventlog/connection.js"
import { ensureWorkConsumer } from "../src/eventlog/streams.js"
import { ConsumerGone, PullSession, type Delivery } from "../src/eventlog/pull.js"
import { log } from "../src/log/log.js"
import type { TaskRepository } from "../src/tasks/repository.js"
import { contextFromTraceparent, parseTraceparent } from "../src/tracing/codec.js"
import { traceHeadersOf, withBaggageHeader } from "../src/tracing/propagation.js"
import { hrNow } from "../src/tracing/spans.js"
import { ATTR, SPANS, TRACERS } from "../src/tracing/conventions.js"
import { DELIVERY_ID_HEADER, deliverWebhook, deliveryId, webhookBackoffSeconds, type WebhookSettings } from "../src/webhooks/deliver.js"
import { webhookBarrierSubject, webhookJobSubject, webhooksStream, type Naming } from "../streams/definitions.js"
import { derivedPublisher } from "./dispatcher.js"
import type { Sink } from "./runtime.js"
import { Duration } from "effect"
import { backoff, tryThenRetry } from "../src/domain/retry.js"
import { utf8 } from "../src/eventlog/utf8.js"

/** Reading the outbox again after a failure: 100 ms doubling to 1 s (a stop waits at most that), jittered. */
const OUTBOX_READ_RETRY = backoff(Duration.millis(100), Duration.seconds(1))

/** A delivery to make: the task and the sequence of the terminal event it reports. */
export interface WebhookJob {
  readonly tenant: string
  readonly taskId: string
  readonly seq: number
  /** The task as of the terminal event at `seq`, and that event's time and trace: what a first attempt needs. */
  readonly snapshot?: JobSnapshot
  /**
   * The terminal event came after the replay horizon of the term that made the job: no earlier
   * term made a job for it (a replay of an event it had handled would be at or below the horizon).
   */
  readonly fresh?: boolean
}

export interface JobSnapshot {
  /** Without the payload (undefined): a delivery reports the outcome, and nothing of it reads the input. */
  readonly state: TaskState
  readonly at: string
  readonly traceparent?: string | undefined
  readonly tracestate?: string | undefined
}

/**
 * A job with its snapshot larger than this goes without it (a task's result may take up to
 * 256 KiB): it stays far from the server's message limit, and such a job reads the log.
 */
export const JOB_SNAPSHOT_MAX_BYTES = 64 * 1024

const TERMINAL_EVENTS: ReadonlySet<string> = new Set(["TaskCompleted", "TaskFailed", "TaskDeadLettered"])
const decoder = new TextDecoder()

/**
 * The outbox sink: a job per terminal event of a task with a webhook still to deliver. Events after
 * `replayHorizon` (the log's end when this term began) make `fresh` jobs.
 */
export const webhookOutbox = (publisher: PipelinedPublisher, naming: Naming, replicas: number, replayHorizon: number): Sink => {
  let stopped = false
  // The webhooks stream's only writer, as the dispatcher is the claims stream's.
  const publish = derivedPublisher(publisher, webhookBarrierSubject(naming), replicas)
  return {
    name: "webhooks",
    apply: ({ stored, after }) => {
      if (!TERMINAL_EVENTS.has(stored.event.type) || after === null || after.webhook === undefined || after.webhookDelivered) return undefined
      const job: WebhookJob = { tenant: stored.event.tenant, taskId: stored.event.taskId, seq: stored.seq, ...(stored.seq > replayHorizon ? { fresh: true } : {}) }
      // WHY without the payload: the POST, the outcome's decision and its span read none of it, and
      // a payload of up to 256 KiB made the job too big to carry a snapshot at all — its delivery
      // then read the task's whole history, the payload with it — after serializing it for nothing.
      const state: TaskState = { ...after, payload: undefined }
      // JSON leaves out what is undefined: the payload, and the trace fields of an event without
      // trace context.
      const snapshot: JobSnapshot = { state, at: stored.event.at, traceparent: stored.trace?.traceparent, tracestate: stored.trace?.tracestate }
      const carried = utf8(JSON.stringify({ ...job, snapshot }))
      const data = carried.length <= JOB_SNAPSHOT_MAX_BYTES ? carried : utf8(JSON.stringify(job))
      const h = dedupHeaders(`hook.${job.tenant}.${job.taskId}.${job.seq}`, webhooksStream(naming))
      return publish({ subject: webhookJobSubject(naming, job.tenant), data, headers: h }, () => stopped)
    },
    stop: () => {
      stopped = true
    }
  }
}

/** What one attempt did: nothing to do, delivered, failed for good, or try again after a delay. */
type Step = "none" | "delivered" | "failed_final" | { readonly retryInSeconds: number }

/** What an attempt starts from: the task, the version to append after, the terminal event, the attempt number. */
interface Basis {
  readonly state: TaskState & { readonly webhook: string }
  readonly version: number
  readonly at: string
  readonly traceparent: string | undefined
  readonly tracestate: string | undefined
  readonly attempt: number
}

/**
 * The basis from the job's snapshot: when it carries a sound one and the task's subject holds
 * nothing after the terminal event (so no attempt was recorded yet and nothing changed the task).
 * That is read from the log, unless it is known: on the first delivery of a fresh job for a
 * settled task (decide.ts's SETTLED: completed or failed here), only this job's attempts could
 * have written after the event, and none was made. Were that ever wrong, the outcome's append under the event's sequence would be refused
 * and decided again on the task as the log has it: a second POST at worst, never a second record.
 */
const basisOfJob = async (repo: TaskRepository, job: WebhookJob, firstDelivery: boolean): Promise<Basis | undefined> => {
  const carried = job.snapshot
  if (carried === undefined) return undefined
  const { state } = carried
  if (state.version !== job.seq || state.id !== job.taskId || state.tenant !== job.tenant || state.webhookDelivered || !TERMINAL.has(state.status)) return undefined
  const webhook = state.webhook
  if (typeof webhook !== "string") return undefined
  const known = firstDelivery && job.fresh === true && SETTLED.has(state.status)
  if (!known && (await repo.log.readTask(job.tenant, job.taskId, job.seq + 1)).version !== 0) return undefined
  return { state: { ...state, webhook }, version: job.seq, at: carried.at, traceparent: carried.traceparent, tracestate: carried.tracestate, attempt: 1 }
}

/** The basis read from the log: undefined when there is nothing to deliver for this job. */
const basisOfLog = async (repo: TaskRepository, job: WebhookJob): Promise<Basis | undefined> => {
  const history = await repo.log.readTask(job.tenant, job.taskId)
  const state = fold(history.events)
  if (state === null || state.webhook === undefined || state.webhookDelivered || !TERMINAL.has(state.status)) return undefined
  const webhook = state.webhook
  // Only the latest terminal event is delivered (a requeued dead letter ends again later).
  const lastTerminal = [...history.events].reverse().find((e) => TERMINAL_EVENTS.has(e.event.type))
  if (lastTerminal === undefined || lastTerminal.seq !== job.seq) return undefined
  const stored: StoredEvent = lastTerminal
  const failures = history.events.filter((e) => e.seq > stored.seq && e.event.type === "WebhookFailed")
  if (failures.some((e) => e.event.type === "WebhookFailed" && e.event.final)) return undefined
  return { state: { ...state, webhook }, version: history.version, at: stored.event.at, traceparent: stored.trace?.traceparent, tracestate: stored.trace?.tracestate, attempt: failures.length + 1 }
}

const attemptOnce = async (repo: TaskRepository, settings: WebhookSettings, job: WebhookJob, firstDelivery: boolean): Promise<Step> => {
  const { tenant, taskId } = job
  const basis = (await basisOfJob(repo, job, firstDelivery)) ?? (await basisOfLog(repo, job))
  if (basis === undefined) return "none"
  const { state, attempt } = basis
  const snapshot = { state, version: basis.version }

  // Parented on the span that wrote the terminal event, with the baggage the create received.
  const parent = withBaggageHeader(contextFromTraceparent(basis.traceparent, basis.tracestate), state.baggage)
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
    completedAt: basis.at
  })
  // The request continues the delivery span through the configured propagators (W3C and baggage,
  // B3 when OTEL_PROPAGATORS asks), with the flags and tracestate exactly as its event carries them.
  const wire = parseTraceparent(span.trace.traceparent, span.trace.tracestate)
  const requestHeaders: Record<string, string> = {
    ...traceHeadersOf(wire === undefined ? span.context : trace.setSpanContext(span.context, wire)),
    [DELIVERY_ID_HEADER]: deliveryId(taskId, job.seq)
  }
  const outcome = await deliverWebhook(state.webhook, body, requestHeaders, settings)
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
    span.span.end(hrNow())
    return "none"
  }
  if (outcome.delivered) return "delivered"
  return final ? "failed_final" : { retryInSeconds: webhookBackoffSeconds(settings, attempt) }
}

export const WEBHOOK_CONSUMER = "codeq-webhooks"

export interface WebhookDeliveries {
  /** Stops pulling; attempts in flight finish and are answered. */
  stop(): Promise<void>
}

const optionalString = (value: unknown) => value === undefined || typeof value === "string"

/** The snapshot if it has the shape a first attempt relies on; a job with any other reads the log. */
const soundSnapshot = (value: unknown): JobSnapshot | undefined => {
  if (typeof value !== "object" || value === null) return undefined
  const { state, at, traceparent, tracestate } = value as Partial<Record<keyof JobSnapshot, unknown>>
  if (typeof state !== "object" || state === null || typeof at !== "string" || !optionalString(traceparent) || !optionalString(tracestate)) return undefined
  const s = state as Partial<Record<keyof TaskState, unknown>>
  const typed =
    typeof s.id === "string" && typeof s.tenant === "string" && typeof s.command === "string" && typeof s.status === "string" && typeof s.version === "number" && typeof s.webhook === "string" && optionalString(s.baggage) && optionalString(s.error)
  return typed ? (value as JobSnapshot) : undefined
}

const parseJob = (delivery: Delivery): WebhookJob | undefined => {
  try {
    const job = JSON.parse(decoder.decode(delivery.data)) as Partial<WebhookJob>
    if (typeof job.tenant !== "string" || typeof job.taskId !== "string" || typeof job.seq !== "number") return undefined
    const snapshot = soundSnapshot(job.snapshot)
    return { tenant: job.tenant, taskId: job.taskId, seq: job.seq, ...(snapshot === undefined ? {} : { snapshot }), ...(job.fresh === true ? { fresh: true } : {}) }
  } catch {
    return undefined
  }
}

/** Deliveries a broker makes at once by default. */
export const WEBHOOK_CONCURRENCY = 64

/** Delivers the outbox's jobs, up to `concurrency` at once, until stopped. */
export const runWebhookDeliveries = async (
  nc: Connection,
  repo: TaskRepository,
  settings: WebhookSettings,
  options: { readonly concurrency?: number; readonly connected?: () => boolean } = {}
): Promise<WebhookDeliveries> => {
  const connected = options.connected ?? (() => true)
  const naming = repo.log.naming
  const stream = webhooksStream(naming)
  // An attempt takes at most the connect and response timeouts, plus the log reads and append.
  const ensureConsumer = () => ensureWorkConsumer(nc, stream, WEBHOOK_CONSUMER, { ackWaitMs: settings.connectTimeoutMs + settings.responseTimeoutMs + 5_000, maxAckPending: 10_000 })
  await ensureConsumer()
  const concurrency = options.concurrency ?? WEBHOOK_CONCURRENCY
  const open = () => new PullSession(nc, stream, WEBHOOK_CONSUMER, { batch: concurrency, expiresMs: 1_000 })
  let session = open()
  const inflight = new Set<Promise<void>>()
  const busy = new Set<string>()
  let stopping = false
  // Woken as an attempt ends, when every slot was taken. WHY not Promise.race over the attempts in
  // flight: each race adds a reaction to every one of them, kept until it settles, so one attempt
  // waiting out a slow receiver's timeout beside fast ones held a reaction per job taken meanwhile.
  let slotFreed: (() => void) | undefined
  const handle = async (delivery: Delivery): Promise<void> => {
    const job = parseJob(delivery)
    if (job === undefined) return session.answer(delivery, "term")
    // One attempt per task at a time here: the server can hand out a job again while its first
    // delivery is still being worked on (seen after a nak'ed job's holder died).
    const key = `${job.tenant}.${job.taskId}`
    if (busy.has(key)) return session.answer(delivery, { nakDelayMs: 1_000 })
    busy.add(key)
    try {
      const step = await attemptOnce(repo, settings, job, delivery.deliveryCount === 1)
      session.answer(delivery, typeof step === "object" ? { nakDelayMs: step.retryInSeconds * 1000 } : "ack")
    } catch (error) {
      log.warn({ task_id: job.taskId, error: error instanceof Error ? error.message : String(error) }, "webhook attempt failed; retrying")
      session.answer(delivery, { nakDelayMs: 5_000 })
    } finally {
      busy.delete(key)
    }
  }
  const take = async (): Promise<Array<Delivery>> => {
    try {
      return await session.take(concurrency - inflight.size, 1_000)
    } catch (error) {
      if (!(error instanceof ConsumerGone)) throw error
      // Deleted under the broker (by hand, or with its stream): made again, with the jobs still in
      // the stream. Until that succeeds, every take comes back here.
      await ensureConsumer()
      void session.stop(false)
      session = open()
      log.warn({ consumer: WEBHOOK_CONSUMER }, "webhook outbox: its consumer was gone; made it again")
      return []
    }
  }
  const loop = (async () => {
    while (!stopping) {
      if (inflight.size >= concurrency) {
        await new Promise<void>((resolve) => (slotFreed = resolve))
        continue
      }
      const got = await tryThenRetry(
        take,
        (attempt) => {
          if (attempt.ok || stopping) return false
          log.warn({ error: String(attempt.error) }, "webhook outbox cannot be read; retrying")
          return true
        },
        OUTBOX_READ_RETRY
      ).catch((): Array<Delivery> => [])
      for (const delivery of got) {
        const job: Promise<void> = handle(delivery).finally(() => {
          inflight.delete(job)
          const wake = slotFreed
          slotFreed = undefined
          wake?.()
        })
        inflight.add(job)
      }
    }
    // Jobs received but not started go back at once; those started finish and are answered.
    // Without the server there is nobody to answer: a job in flight comes back after its ack wait.
    const up = connected()
    for (const delivery of await session.stop(up)) if (up) session.answer(delivery, { nakDelayMs: 0 })
    if (up) await Promise.allSettled(inflight)
  })()
  return {
    stop: async () => {
      stopping = true
      // Without the server nothing can be answered: a job in flight comes back after its ack wait.
      if (connected()) await loop
    }
  }
}
