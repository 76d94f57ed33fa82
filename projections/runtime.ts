/**
 * The projection runtime (DESIGN §4). One durable pull consumer per projection on the event log;
 * every message is decoded with the event Schema, handed to the projection, retried with a named
 * Schedule, and acked only after it succeeded. An undecodable event is quarantined (counted,
 * logged with its sequence, acked) so it can never stop the stream. Interruption stops pulling and
 * lets every received event finish before the runtime returns. A rebuild (rebuild.ts) drops the
 * durable and replays the log through a fresh one.
 */
import { AckPolicy, DeliverPolicy, nanos, type NatsConnection } from "nats"
import { durablePull, type Delivery } from "./pull.js"
import { Cause, Data, Duration, Effect, Schedule } from "effect"
import { EVENT_TYPES, type StoredEvent, type TaskEventType } from "../src/domain/events.js"
import { HEADERS } from "../src/tracing/conventions.js"
import { log, withTrace } from "../src/log.js"
import { decodeEvent, type RawEvent } from "../src/eventlog/codec.js"
import { eventsStream, type Naming } from "../streams/definitions.js"

/** A projection failed to handle an event; retried, then the event is redelivered later. */
export class ProjectionError extends Data.TaggedError("ProjectionError")<{
  readonly projection: string
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * A handler asking for the event again later (e.g. a webhook retry): the event is nak'ed with this
 * delay, so the retry lives in the consumer and survives a restart. Not retried in process.
 */
export class RetryLater extends Data.TaggedError("RetryLater")<{ readonly delayMs: number; readonly reason: string }> {}

/** What the runtime knows about this delivery of an event. */
export interface DeliveryMeta {
  /** 1 on the first delivery of the event to this projection. */
  readonly deliveryCount: number
}

export interface Projection {
  /** Durable consumer name suffix; stable across releases. */
  readonly name: string
  /** Event types it acts on; any other event is acked without work. */
  readonly handles: ReadonlyArray<TaskEventType>
  /** Events handled at once. Starts are in log order; 1 also finishes them in order. */
  readonly concurrency: number
  /**
   * How long a delivered event may stay unanswered before the server hands it out again (after
   * a crash, that is how long in-flight events wait). Longer than the slowest handler. Default 30 s.
   */
  readonly ackWaitMs?: number
  readonly handle: (stored: StoredEvent, meta: DeliveryMeta) => Effect.Effect<void, ProjectionError | RetryLater>
}

/** Retry policy for a failing handler: jittered exponential from 100 ms, 6 tries, then redeliver. */
export const HANDLER_RETRY = Schedule.exponential(Duration.millis(100), 2).pipe(
  Schedule.jittered,
  Schedule.intersect(Schedule.recurs(5))
)

/** Where an event that still fails after retries goes: back to the server, redelivered later. */
export const REDELIVERY_DELAY_MS = 5_000

export interface QuarantinedEvent {
  readonly projection: string
  readonly seq: number
  readonly subject: string
  readonly reason: string
}

export interface RuntimeHooks {
  /** Called for each quarantined event (after it is logged). Must not throw. */
  readonly onQuarantine?: (event: QuarantinedEvent) => void
  /** Called after each handled event with its sequence (for lag metrics and tests). */
  readonly onHandled?: (projection: string, seq: number) => void
}

export interface RuntimeOptions extends RuntimeHooks {
  readonly naming: Naming
  /** Messages buffered from the server per pull. Default 512. */
  readonly batch?: number
}

export const durableName = (projection: string) => `codeq-projection-${projection}`

const rawOf = (msg: Delivery): RawEvent => ({
  seq: msg.seq,
  subject: msg.subject,
  time: msg.time,
  data: msg.data,
  header: (key) => (msg.headers?.has(key) === true ? msg.headers.get(key) : undefined)
})

/** Log lines about an event carry its trace (the span that wrote it), so they join to it. */
const eventLog = (msg: Delivery) => withTrace(log, msg.headers?.get(HEADERS.traceparent) || undefined)

const handleMessage = (projection: Projection, hooks: RuntimeHooks, handles: ReadonlySet<string>, msg: Delivery, ack: boolean) => {
  const decoded = decodeEvent(rawOf(msg))
  if (!decoded.ok) {
    const quarantined = { projection: projection.name, seq: decoded.seq, subject: decoded.subject, reason: decoded.reason }
    return Effect.sync(() => {
      eventLog(msg).warn(quarantined, "event quarantined")
      try {
        hooks.onQuarantine?.(quarantined)
      } catch {
        // observers never break the runtime
      }
      if (ack) msg.ack()
    })
  }
  const done = Effect.sync(() => {
    if (ack) msg.ack()
    hooks.onHandled?.(projection.name, msg.seq)
  })
  if (!handles.has(decoded.stored.event.type)) return done
  const failed = (cause: Cause.Cause<ProjectionError | RetryLater>) =>
    Effect.sync(() => {
      const failure = Cause.failureOption(cause)
      if (failure._tag === "Some" && failure.value._tag === "RetryLater") {
        if (ack) msg.nak(failure.value.delayMs)
        return
      }
      eventLog(msg).error({ projection: projection.name, seq: msg.seq, error: Cause.pretty(cause).split("\n")[0] }, "projection handler failed; event will be redelivered")
      if (ack) msg.nak(REDELIVERY_DELAY_MS)
    })
  return projection.handle(decoded.stored, { deliveryCount: msg.deliveryCount }).pipe(
    Effect.retry({ schedule: HANDLER_RETRY, while: (error) => error._tag !== "RetryLater" }),
    Effect.matchCauseEffect({ onSuccess: () => done, onFailure: failed }),
    // In-flight events finish even when the runtime is interrupted: an event is never half-handled.
    Effect.uninterruptible
  )
}

const KNOWN_TYPES: ReadonlySet<string> = new Set(EVENT_TYPES)
const RESOLVED = Promise.resolve()

/**
 * The per-event entry point, plain on purpose: an event whose `Codeq-Event` header names a known
 * type the projection does not handle is settled without decoding or an Effect run — most events,
 * for most projections. Anything else (handled, or a header that is missing or unknown, which is
 * how garbage is caught and quarantined) goes through the full decoding handler.
 */
const dispatchMessage = (projection: Projection, hooks: RuntimeHooks, handles: ReadonlySet<string>, msg: Delivery, ack: boolean): Promise<void> => {
  const declared = msg.headers?.get(HEADERS.event)
  if (declared !== undefined && KNOWN_TYPES.has(declared) && !handles.has(declared)) {
    if (ack) msg.ack()
    hooks.onHandled?.(projection.name, msg.seq)
    return RESOLVED
  }
  return Effect.runPromise(handleMessage(projection, hooks, handles, msg, ack))
}

const ensureDurable = (nc: NatsConnection, naming: Naming, projection: Projection) =>
  Effect.tryPromise({
    try: async () => {
      const jsm = await nc.jetstreamManager()
      const config = {
        durable_name: durableName(projection.name),
        filter_subject: `${naming.subjectRoot}.evt.>`,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: nanos(projection.ackWaitMs ?? 30_000),
        max_ack_pending: 20_000,
        max_deliver: -1
      }
      try {
        await jsm.consumers.add(eventsStream(naming), config)
      } catch (error) {
        // An existing consumer from an earlier release or setting: bring it to this one.
        if (!/already|exists|in use/i.test(String(error))) throw error
        await jsm.consumers.update(eventsStream(naming), config.durable_name, config)
      }
    },
    catch: (cause) => new ProjectionError({ projection: projection.name, message: "cannot create the projection consumer", cause })
  })

/**
 * Runs a projection until interrupted. Fails only if its consumer cannot be created or read.
 */
export const runProjection = (nc: NatsConnection, projection: Projection, options: RuntimeOptions) =>
  Effect.gen(function* () {
    yield* ensureDurable(nc, options.naming, projection)
    const handles = new Set<string>(projection.handles)
    const loop = yield* Effect.acquireRelease(
      Effect.sync(() =>
        durablePull(nc, eventsStream(options.naming), durableName(projection.name), options.batch ?? 512, projection.concurrency, (msg) =>
          dispatchMessage(projection, options, handles, msg, true)
        )
      ),
      (running) => Effect.promise(() => running.stop().catch(() => undefined))
    )
    yield* Effect.tryPromise({
      try: () => loop.done,
      catch: (cause) => new ProjectionError({ projection: projection.name, message: "consume failed", cause })
    })
  }).pipe(Effect.scoped)
