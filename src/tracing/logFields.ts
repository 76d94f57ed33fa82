/**
 * Log lines that name their trace: the trace fields of a span, bound to a logger.
 */
import { trace, type Context, type SpanContext } from "@opentelemetry/api"
import type { Logger } from "../log/log.js"
import { formatTraceparent, parseTraceparent } from "./codec.js"

/** What every line of a traced request or event carries. */
export interface TraceLogFields {
  /** 32 hex digits, the span's trace id as the trace backend shows it. */
  readonly trace_id: string
  /** 16 hex digits, the span the line was written under. */
  readonly span_id: string
  /** The W3C header form of the same span, ready to paste into a request. */
  readonly traceparent: string
}

/** Where trace fields come from: a context with a span, a span context, or a traceparent header. */
export type TraceSource = Context | SpanContext | string | undefined

const isSpanContext = (source: Context | SpanContext): source is SpanContext =>
  typeof (source as Partial<SpanContext>).traceId === "string"

/**
 * The trace fields of a context's span, a span context, or a traceparent header value; no
 * fields when there is no valid span (a malformed header is never echoed into a log line).
 */
export const traceFields = (source: TraceSource): TraceLogFields | Record<string, never> => {
  if (source === undefined) return {}
  const span = typeof source === "string" ? parseTraceparent(source) : isSpanContext(source) ? source : trace.getSpanContext(source)
  if (span === undefined || !trace.isSpanContextValid(span)) return {}
  return { trace_id: span.traceId, span_id: span.spanId, traceparent: formatTraceparent(span) }
}

/**
 * A child logger whose every line carries the trace fields of `source`. Bind once per request
 * or event; a source without a valid span gives the logger back unchanged.
 */
export const withTrace = (logger: Logger, source: TraceSource): Logger => {
  const fields = traceFields(source)
  return "trace_id" in fields ? logger.child(fields) : logger
}
