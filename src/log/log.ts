/**
 * Structured JSON logs (DESIGN §6). Every line about a request or an event carries `trace_id`,
 * `span_id` and `traceparent`, so a log line and a span are mechanically joinable: filter the
 * trace backend by the line's trace_id, or the logs by a span's. The fields come from
 * `withTrace` (src/tracing/logFields.ts); this module knows nothing of traces.
 *
 * Logs say what a step was doing, never what it was carrying: payloads, results, URLs,
 * idempotency keys, credentials and tokens are censored by path before a line is written.
 */
import { pino, type DestinationStream, type Logger as PinoLogger } from "pino"

/** codeq's logger: pino, one JSON object per line. */
export type Logger = PinoLogger

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
