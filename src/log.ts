/**
 * Structured JSON logs (DESIGN §6). Every line about a request or an event carries `trace_id`,
 * `span_id` and `traceparent`, so a log line and a span are mechanically joinable: filter the
 * trace backend by the line's trace_id, or the logs by a span's.
 *
 * Logs say what a step was doing, never what it was carrying: payloads, results, URLs,
 * idempotency keys, credentials and tokens are censored by path before a line is written.
 */
import { trace, type Context, type SpanContext } from "@opentelemetry/api"
import { pino, type DestinationStream, type Logger as PinoLogger } from "pino"
import { formatTraceparent, parseTraceparent } from "./tracing/codec.js"

/** codeq's logger: pino, one JSON object per line. */
export type Logger = PinoLogger

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

const CENSOR = "[redacted]"

/** Keys whose values never reach a log line, at the top level and one object down. */
const SENSITIVE_KEYS = [
  "payload",
  "result",
  "body",
  "webhook",
  "webhookUrl",
  "callbackUrl",
  "url",
  "idempotencyKey",
  "idempotency_key",
  "authorization",
  "cookie",
  "password",
  "secret",
  "token",
  "accessToken",
  "refreshToken",
  "apiKey",
  "api_key",
  "credentials"
] as const

/** Header names that carry credentials, wherever a `headers` object appears. */
const SENSITIVE_HEADERS = ["authorization", "cookie", "set-cookie", "x-api-key", "proxy-authorization"] as const

/** The pino `redact` paths codeq logs with. */
export const REDACT_PATHS: ReadonlyArray<string> = [
  ...SENSITIVE_KEYS.flatMap((key) => [key, `*.${key}`]),
  ...SENSITIVE_HEADERS.flatMap((header) => [`headers["${header}"]`, `*.headers["${header}"]`])
]

const LEVELS = new Set(["fatal", "error", "warn", "info", "debug", "trace", "silent"])

export interface LoggerOptions {
  /** Minimum level written. Default `LOG_LEVEL`, else `info`. */
  readonly level?: string
  /** Where lines go. Default stdout. */
  readonly destination?: DestinationStream
  /** Fields bound to every line, e.g. `{ component: "dispatcher" }`. */
  readonly bindings?: Record<string, unknown>
}

/** A JSON logger with ISO timestamps, level names and codeq's redaction. */
export const createLogger = (options: LoggerOptions = {}): Logger => {
  const requested = (options.level ?? process.env.LOG_LEVEL ?? "info").trim().toLowerCase()
  const logger = pino(
    {
      level: LEVELS.has(requested) ? requested : "info",
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: [...REDACT_PATHS], censor: CENSOR }
    },
    options.destination
  )
  return options.bindings === undefined ? logger : logger.child(options.bindings)
}

/** The process-wide logger. Components take a child: `log.child({ component: "..." })`. */
export const log: Logger = createLogger()

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
