/**
 * Rebuilding the spans of one task as the live code made them. Each event's span: ids, flags and
 * trace state from its `traceparent`/`tracestate`, parent from `Codeq-Parent-Span`, start from
 * `Codeq-Span-Start`, end from the log timestamp; name, tracer and attributes from the same
 * `spanSpecFor` the repository calls, given the task's state before the event (folded with the
 * domain's `evolve`), plus what the webhook projection adds to its span. Status and kind are
 * decided here (`spanStatusOf`, `spanKindOf`) and nowhere else in replay.
 */
import { SpanKind, SpanStatusCode, type Attributes } from "@opentelemetry/api"
import { Either, ParseResult } from "effect"
import { eventDecoderOf } from "../domain/eventDecode.js"
import { evolve, type TaskEvent, type StoredEvent, type TaskState } from "../domain/events.js"
import { ATTR } from "../tracing/conventions.js"
import { spanSpecFor, spanStatusOf as liveStatusOf } from "../tracing/transitions.js"
import { spanCoreOf } from "./core.js"
import type { LogRecord, ReplaySpan, SpanCore, SpanStatusJson } from "./model.js"

/** A record's event, decoded with the event schema of its type; a reason when it does not decode. */
export const decodeRecordEvent = (record: LogRecord): TaskEvent | string => {
  if (record.bodyError !== undefined) return record.bodyError
  const decode = eventDecoderOf(record.type)
  if (decode === undefined) return `unknown event type ${JSON.stringify(record.type.slice(0, 64))}`
  const decoded = decode(record.body)
  if (Either.isRight(decoded)) return decoded.right
  const [issue] = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)
  return `not a valid ${record.type}: ${issue === undefined ? "invalid" : `${issue.path.join(".") || "body"}: ${issue.message}`}`.slice(0, 300)
}

const UNSET_STATUS: SpanStatusJson = { code: SpanStatusCode.UNSET }

/**
 * The status of the span that writes `event`: an error for a task that failed, was dead-lettered
 * or rejected, and for a failed webhook attempt (with its failure class, as the live span has).
 */
/** The live span's status (src/tracing/transitions.ts): replay and live cannot differ. */
export const spanStatusOf = (event: TaskEvent): SpanStatusJson => liveStatusOf(event)

/** The kind of every transition span: internal, as the live ones are started. */
export const spanKindOf = (_event: TaskEvent): SpanKind => SpanKind.INTERNAL

const hostOf = (url: string | undefined): string | undefined => {
  if (url === undefined) return undefined
  try {
    return new URL(url).hostname
  } catch {
    return undefined
  }
}

/** The attributes the live span of `event` ends with, for a task in `state` before it. */
export const spanAttributesOf = (event: TaskEvent, state: TaskState | null, subject: string): Attributes => {
  const attributes = spanSpecFor(event, state, subject).attributes()
  if (event.type === "WebhookDelivered" || event.type === "WebhookFailed") {
    // What the webhook projection sets besides spanSpecFor's (projections/webhooks.ts).
    const host = hostOf(state?.webhook)
    if (host !== undefined) attributes[ATTR.webhookHost] = host
    attributes["http.response.status_code"] = event.statusCode ?? 0
  }
  return attributes
}

const storedOf = (record: LogRecord, event: TaskEvent): StoredEvent => ({
  seq: record.seq,
  subject: record.subject,
  time: new Date(Number(record.timeNs.slice(0, -6) || "0")),
  event,
  trace:
    record.traceparent === undefined
      ? undefined
      : { traceparent: record.traceparent, tracestate: record.tracestate, parentSpanId: record.parentSpanId, spanStart: record.spanStart },
  prevSeq: record.prevSeq
})

/** The task's state after `records` (undecodable events are skipped, as the projections skip them). */
export const foldRecords = (records: ReadonlyArray<LogRecord>, from: TaskState | null = null): TaskState | null => {
  let state = from
  for (const record of records) {
    const event = decodeRecordEvent(record)
    if (typeof event !== "string") state = evolve(state, storedOf(record, event))
  }
  return state
}

export interface RebuiltSpans {
  readonly spans: ReadonlyArray<ReplaySpan>
  /** Events without a valid traceparent. */
  readonly untraced: ReadonlyArray<{ readonly seq: number; readonly event: string }>
  /** Events whose body did not decode: their spans carry name and ids but no attributes. */
  readonly undecodable: ReadonlyArray<{ readonly seq: number; readonly reason: string }>
  readonly state: TaskState | null
}

/** A span from its core (ids, times) and what the live one was named, tagged and ended with. */
const spanOf = (core: SpanCore, name: string, scope: string, kind: SpanKind, attributes: Attributes, status: SpanStatusJson): ReplaySpan => ({
  seq: core.seq,
  event: core.event,
  traceId: core.traceId,
  spanId: core.spanId,
  traceFlags: core.traceFlags,
  traceState: core.traceState,
  parentSpanId: core.parentSpanId,
  startNs: core.startNs,
  endNs: core.endNs,
  name,
  scope,
  kind,
  attributes,
  status
})

/** The spans of `records` (one task's events in log order), the task being in `before` first. */
export const rebuildSpans = (records: ReadonlyArray<LogRecord>, before: TaskState | null): RebuiltSpans => {
  const spans: Array<ReplaySpan> = []
  const untraced: Array<{ seq: number; event: string }> = []
  const undecodable: Array<{ seq: number; reason: string }> = []
  let state = before
  for (const record of records) {
    const core: SpanCore | undefined = spanCoreOf(record)
    const event = decodeRecordEvent(record)
    if (typeof event === "string") {
      undecodable.push({ seq: record.seq, reason: event })
      if (core === undefined) untraced.push({ seq: record.seq, event: record.type })
      else {
        const named = namedOnly(record.type)
        spans.push(spanOf(core, named.name, named.scope, SpanKind.INTERNAL, {}, UNSET_STATUS))
      }
      continue
    }
    if (core === undefined) untraced.push({ seq: record.seq, event: record.type })
    else {
      const spec = spanSpecFor(event, state, record.subject)
      spans.push(spanOf(core, spec.name, spec.tracer, spanKindOf(event), spanAttributesOf(event, state, record.subject), spanStatusOf(event)))
    }
    state = evolve(state, storedOf(record, event))
  }
  return { spans, untraced, undecodable, state }
}

/** Name and tracer of an event type whose body is unreadable (the type is all there is). */
const namedOnly = (type: string): { name: string; scope: string } => {
  if (eventDecoderOf(type) === undefined) return { name: `codeq.unknown_event`, scope: "codeq/replay" }
  // spanSpecFor reads only the type for name and tracer; the attributes are never built here.
  const spec = spanSpecFor({ type } as TaskEvent, null, "")
  return { name: spec.name, scope: spec.tracer }
}
