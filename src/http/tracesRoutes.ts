/**
 * A task's log and its rebuilt trace over HTTP (DESIGN §7): `GET /v1/codeq/tasks/:id/events`
 * (the events as the log holds them, with the trace headers of the span that wrote each) and
 * `GET /v1/codeq/tasks/:id/trace` (the span tree replay rebuilds from them, audited). Tenant-
 * checked like `GET /v1/codeq/tasks/:id`: a caller sees its own tenant's tasks, another tenant's
 * is a 404; a token with codeq:admin sees a task of any tenant.
 */
import { Schema } from "effect"
import { eventsStream } from "../../streams/definitions.js"
import { checkTaskId } from "../domain/validation.js"
import { buildTaskTrace, endsTask, isoFromNs, readSubject, traceJson, type LogRecord } from "../replay/index.js"
import { ADMIN_SCOPE, type Principal } from "./auth.js"
import { ErrorBody, HttpError, badRequest } from "./errors.js"
import { route, type Route } from "./router.js"
import type { HttpBackend } from "./backend.js"
import { AUTH_ERRORS } from "./errors.js"

const ERR = (description: string) => ({ description, schema: ErrorBody })
const Nanos = Schema.String.annotations({ description: "Unix epoch nanoseconds, decimal" })
const Attributes = Schema.Record({ key: Schema.String, value: Schema.Unknown })
const Problem = Schema.Struct({
  rule: Schema.String.annotations({ description: "the audit rule broken (trace-headers, trace-id, parent-create, parent-terminal, duplicate-span, time-order, missing-event, orphan)" }),
  seq: Schema.optional(Schema.Number),
  message: Schema.String
}).annotations({ identifier: "TraceProblem" })

export const TaskEventsJson = Schema.Struct({
  taskId: Schema.String,
  tenant: Schema.String,
  events: Schema.Array(
    Schema.Struct({
      seq: Schema.Number.annotations({ description: "stream sequence" }),
      type: Schema.String,
      time: Schema.String.annotations({ description: "when the log stored it (RFC 3339, nanoseconds): the writing span's end" }),
      timeUnixNano: Nanos,
      traceparent: Schema.optional(Schema.String),
      tracestate: Schema.optional(Schema.String),
      baggage: Schema.optional(Schema.String.annotations({ description: "W3C baggage the create received (TaskCreated only)" })),
      parentSpanId: Schema.optional(Schema.String.annotations({ description: "Codeq-Parent-Span: the writing span's parent" })),
      spanStartUnixNano: Schema.optional(Nanos.annotations({ description: "Codeq-Span-Start: the writing span's start" })),
      prevSeq: Schema.optional(Schema.Number.annotations({ description: "Codeq-Prev-Seq: the task's event this one was appended after" })),
      event: Schema.Unknown.annotations({ description: "the event body as stored" })
    })
  )
}).annotations({ identifier: "TaskEvents" })

interface TraceSpanJson {
  readonly seq: number
  readonly event: string
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
  readonly scope: string
  readonly kind: string
  readonly startTimeUnixNano: string
  readonly endTimeUnixNano: string
  readonly durationMs: number
  readonly status: { readonly code: "UNSET" | "OK" | "ERROR"; readonly message?: string }
  readonly attributes: { readonly [key: string]: unknown }
  readonly problems: ReadonlyArray<{ readonly rule: string; readonly message: string }>
  readonly children: ReadonlyArray<TraceSpanJson>
}

const TraceSpan: Schema.Schema<TraceSpanJson> = Schema.Struct({
  seq: Schema.Number,
  event: Schema.String,
  traceId: Schema.String,
  spanId: Schema.String,
  parentSpanId: Schema.optional(Schema.String),
  name: Schema.String,
  scope: Schema.String.annotations({ description: "the tracer that made the live span" }),
  kind: Schema.String,
  startTimeUnixNano: Nanos,
  endTimeUnixNano: Nanos,
  durationMs: Schema.Number,
  status: Schema.Struct({ code: Schema.Literal("UNSET", "OK", "ERROR"), message: Schema.optional(Schema.String) }),
  attributes: Attributes,
  problems: Schema.Array(Schema.Struct({ rule: Schema.String, message: Schema.String })),
  children: Schema.Array(Schema.suspend((): Schema.Schema<TraceSpanJson> => TraceSpan))
}).annotations({ identifier: "TraceSpan", description: "a span rebuilt from the event it wrote; its children are the spans parented on it" })

export const TaskTraceJson = Schema.Struct({
  taskId: Schema.String,
  tenant: Schema.String,
  traceId: Schema.optional(Schema.String),
  remoteParentSpanId: Schema.optional(Schema.String.annotations({ description: "the create's parent (the producer's or HTTP server's span), not in the log" })),
  command: Schema.optional(Schema.String),
  status: Schema.optional(Schema.String),
  attempts: Schema.optional(Schema.Number),
  closed: Schema.Boolean.annotations({ description: "the task has ended (and its webhook outcome, if any, is in)" }),
  spans: Schema.Array(TraceSpan),
  untraced: Schema.Array(Schema.Struct({ seq: Schema.Number, event: Schema.String })).annotations({ description: "events without a valid traceparent" }),
  problems: Schema.Array(Problem)
}).annotations({ identifier: "TaskTrace" })

/** The task's events, from its tenant's subject (any tenant's for an admin); 404 when none. */
const taskRecords = async (backend: HttpBackend, principal: Principal, id: string | undefined): Promise<ReadonlyArray<LogRecord>> => {
  const issue = checkTaskId(id)
  if (issue !== undefined || id === undefined) throw badRequest(issue ?? { field: "id", rule: "uuid", message: "id must be a lowercase UUID" })
  const tenant = principal.scopes.has(ADMIN_SCOPE) ? "*" : principal.tenant
  const records = await readSubject(backend.nc, eventsStream(backend.naming), `${backend.naming.subjectRoot}.evt.${tenant}.${id}`, { bodies: "all" })
  const subject = records[0]?.subject
  if (subject === undefined) throw new HttpError({ status: 404, body: { error: "task not found" } })
  return records.filter((r) => r.subject === subject)
}

const tenantOf = (subject: string): string => subject.split(".").slice(-2)[0] ?? ""

export const traceRoutes = (backend: HttpBackend): ReadonlyArray<Route> => [
  route({
    method: "GET",
    path: "/v1/codeq/tasks/:id/events",
    summary: "A task's events as the log holds them, each with the trace headers of the span that wrote it",
    access: { kind: "tenant" },
    responses: { 200: { description: "the events in log order", schema: TaskEventsJson }, 400: ERR("invalid id"), 404: ERR("no such task in this tenant"), ...AUTH_ERRORS },
    handle: async ({ principal, params }) => {
      const records = await taskRecords(backend, principal, params.id)
      return {
        status: 200,
        body: {
          taskId: params.id,
          tenant: tenantOf(records[0]?.subject ?? ""),
          events: records.map((r) => ({
            seq: r.seq,
            type: r.type,
            time: isoFromNs(r.timeNs),
            timeUnixNano: r.timeNs,
            ...(r.traceparent !== undefined ? { traceparent: r.traceparent } : {}),
            ...(r.tracestate !== undefined ? { tracestate: r.tracestate } : {}),
            ...(r.baggage !== undefined ? { baggage: r.baggage } : {}),
            ...(r.parentSpanId !== undefined ? { parentSpanId: r.parentSpanId } : {}),
            ...(r.spanStart !== undefined ? { spanStartUnixNano: r.spanStart } : {}),
            ...(r.prevSeq !== undefined ? { prevSeq: r.prevSeq } : {}),
            event: r.body ?? null
          }))
        }
      }
    }
  }),
  route({
    method: "GET",
    path: "/v1/codeq/tasks/:id/trace",
    summary: "The task's span tree, rebuilt from its events with their original ids and times, and audited",
    access: { kind: "tenant" },
    responses: { 200: { description: "the rebuilt trace", schema: TaskTraceJson }, 400: ERR("invalid id"), 404: ERR("no such task in this tenant"), ...AUTH_ERRORS },
    handle: async ({ principal, params }) => {
      const records = await taskRecords(backend, principal, params.id)
      const subject = records[0]?.subject ?? ""
      return { status: 200, body: traceJson(buildTaskTrace({ subject, records, closed: endsTask(records) }, [])) }
    }
  })
]
