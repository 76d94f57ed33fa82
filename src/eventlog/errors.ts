/**
 * The event log's errors. Vendor errors are translated here and nowhere else: JetStream's
 * "wrong last sequence" (API error 10071) is a ConcurrencyConflict, a publish nobody answers
 * ("no responders") is `unavailable` — nothing was stored, so it can be sent again — and an ack
 * that never comes is a timeout whose outcome is unknown.
 */
import { Data } from "effect"
import { NatsError } from "nats"

/** Another writer appended to the task first: re-read and decide again, or report a conflict. */
export class ConcurrencyConflict extends Data.TaggedError("ConcurrencyConflict")<{
  readonly subject: string
  readonly expectedSeq: number
  /** The subject's actual last sequence when the server reported it. */
  readonly actualSeq: number | undefined
}> {
  override get message() {
    return `wrong last sequence on ${this.subject}: expected ${this.expectedSeq}, found ${this.actualSeq ?? "unknown"}`
  }
}

export type LogErrorReason =
  /** No ack within the deadline: the event may or may not have been stored. */
  | "timeout"
  /**
   * Nobody answered the publish ("no responders"): the stream is not provisioned, or its leader is
   * being elected. Nothing was stored; retrying is safe.
   */
  | "unavailable"
  /** The server refused the message (size, limits, a header rule). */
  | "rejected"
  /** The connection is closed or draining. */
  | "closed"
  /** A read failed. */
  | "read_failed"

export class LogError extends Data.TaggedError("LogError")<{
  readonly reason: LogErrorReason
  readonly detail: string
  readonly cause?: unknown
}> {
  override get message() {
    return `event log ${this.reason}: ${this.detail}`
  }
}

export type AppendError = ConcurrencyConflict | LogError

/** JetStream's API error code for a failed `Nats-Expected-Last-Subject-Sequence` check. */
export const JS_WRONG_LAST_SEQUENCE = 10071

/** JetStream's API error code for a consumer that does not exist. */
export const JS_CONSUMER_NOT_FOUND = 10014
/** JetStream's API error code for a stream that does not exist. */
export const JS_STREAM_NOT_FOUND = 10059
/** Codes for a consumer that exists already (name in use, exists and active, exists with other settings). */
const JS_CONSUMER_EXISTS: ReadonlySet<number> = new Set([10013, 10105, 10148])

/**
 * The JetStream API error code an error carries, if any. Every JetStream answer codeq tells
 * apart is told apart here, by code, so no other module matches error messages.
 */
export const jetStreamCode = (error: unknown): number | undefined =>
  typeof error === "object" && error !== null ? (error as { api_error?: { err_code?: number } }).api_error?.err_code : undefined

/** Whether a JetStream API error says the consumer does not exist. */
export const isConsumerNotFound = (error: unknown): boolean => jetStreamCode(error) === JS_CONSUMER_NOT_FOUND

/** Whether a JetStream API error says the stream (or key-value bucket) does not exist. */
export const isStreamNotFound = (error: unknown): boolean => jetStreamCode(error) === JS_STREAM_NOT_FOUND

/**
 * Whether adding a consumer failed because it exists (with other settings): update it instead.
 * Servers before the codes above answered in words only, hence the message as a fallback.
 */
export const isConsumerExists = (error: unknown): boolean => {
  const code = jetStreamCode(error)
  return code !== undefined ? JS_CONSUMER_EXISTS.has(code) : /already|exists|in use/i.test(String(error))
}

/** Whether the server runs without JetStream (no JetStream API answers, or it says so). */
export const isJetStreamDisabled = (error: unknown): boolean =>
  (typeof error === "object" && error !== null && (error as { code?: unknown }).code === "503") || /jetstream not enabled/i.test(String(error))

/** NATS client error codes that mean "the server cannot be reached right now". */
const UNREACHABLE: ReadonlySet<string> = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_DRAINING",
  "CONNECTION_REFUSED",
  "CONNECTION_TIMEOUT",
  "DISCONNECT",
  "TIMEOUT",
  "503",
  "CANCELLED"
])

/** Whether a NATS client error says the server cannot be reached right now (try again later). */
export const isServerUnreachable = (error: unknown): boolean => error instanceof NatsError && UNREACHABLE.has(error.code)
