/**
 * Rules for every value that reaches a subject or the log. Pure: each check returns the first
 * broken rule as data, naming the field, so HTTP, the SDK and the CLI report it the same way.
 */

/** A broken input rule: which field, which rule, and a sentence for a human. */
export interface ValidationIssue {
  readonly field: string
  readonly rule: string
  readonly message: string
}

export const TENANT_PATTERN = /^[a-z][a-z0-9-]{1,62}$/
export const COMMAND_PATTERN = /^[A-Za-z0-9_-]{1,64}$/
export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
export const WORKER_ID_PATTERN = /^[A-Za-z0-9_.:@-]{1,128}$/

const issue = (field: string, rule: string, message: string): ValidationIssue => ({ field, rule, message })

export const checkTenant = (tenant: unknown, field = "tenant"): ValidationIssue | undefined =>
  typeof tenant === "string" && TENANT_PATTERN.test(tenant)
    ? undefined
    : issue(field, "pattern", `${field} must match ${TENANT_PATTERN.source} (lowercase letter first, 2-63 chars)`)

export const checkCommand = (command: unknown, field = "command"): ValidationIssue | undefined =>
  typeof command === "string" && COMMAND_PATTERN.test(command)
    ? undefined
    : issue(field, "pattern", `${field} must match ${COMMAND_PATTERN.source}`)

export const checkTaskId = (id: unknown, field = "id"): ValidationIssue | undefined =>
  typeof id === "string" && UUID_PATTERN.test(id) ? undefined : issue(field, "uuid", `${field} must be a lowercase UUID`)

export const checkWorkerId = (id: unknown, field = "workerId"): ValidationIssue | undefined =>
  typeof id === "string" && WORKER_ID_PATTERN.test(id)
    ? undefined
    : issue(field, "pattern", `${field} must match ${WORKER_ID_PATTERN.source}`)

export const checkIntRange = (value: unknown, field: string, min: number, max: number): ValidationIssue | undefined =>
  typeof value === "number" && Number.isInteger(value) && value >= min && value <= max
    ? undefined
    : issue(field, "range", `${field} must be an integer from ${min} to ${max}`)

export const checkNumberRange = (value: unknown, field: string, min: number, max: number): ValidationIssue | undefined =>
  typeof value === "number" && Number.isFinite(value) && value >= min && value <= max
    ? undefined
    : issue(field, "range", `${field} must be a number from ${min} to ${max}`)

/** An absolute ISO 8601 timestamp with a time zone (e.g. 2026-01-02T03:04:05Z) on a real calendar day. */
export const checkTimestamp = (value: unknown, field: string): ValidationIssue | undefined => {
  const iso = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/
  const match = typeof value === "string" ? iso.exec(value) : null
  const bad = issue(field, "timestamp", `${field} must be an ISO 8601 timestamp with a time zone`)
  if (match === null || Number.isNaN(Date.parse(String(value)))) return bad
  // Date.parse rolls 2026-02-30 over to March; the calendar day must exist as written.
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])]
  const calendar = new Date(Date.UTC(year, month - 1, day))
  return calendar.getUTCFullYear() === year && calendar.getUTCMonth() === month - 1 && calendar.getUTCDate() === day ? undefined : bad
}

/**
 * A valid timestamp at most `maxAheadSeconds` from `now`. Without this bound a producer could ask
 * for a delay that overflows the server's nanosecond redelivery delay (past about the year 2318).
 */
export const checkNotAfter = (value: string, field: string, maxAheadSeconds: number, now: number = Date.now()): ValidationIssue | undefined =>
  Date.parse(value) - now <= maxAheadSeconds * 1000
    ? undefined
    : issue(field, "range", `${field} must be at most ${maxAheadSeconds} seconds (${Math.floor(maxAheadSeconds / 86_400)} days) from now`)

export const MAX_WEBHOOK_LENGTH = 2048
/** The longest `error` of a failed task, in characters (HTTP and SDK alike). */
export const MAX_ERROR_LENGTH = 4096
/** The longest `reason` of a nack or a cancel, in characters (HTTP and SDK alike). */
export const MAX_REASON_LENGTH = 1024

/** An absolute http(s) URL. Where it may point (SSRF rules) is checked at delivery time. */
export const checkWebhook = (value: unknown, field = "webhook"): ValidationIssue | undefined => {
  if (typeof value !== "string" || value.length === 0 || value.length > MAX_WEBHOOK_LENGTH)
    return issue(field, "url", `${field} must be an absolute http(s) URL of at most ${MAX_WEBHOOK_LENGTH} characters`)
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return issue(field, "url", `${field} must be an absolute http(s) URL`)
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    return issue(field, "url", `${field} must use http or https`)
  return undefined
}

/** A string (empty allowed) of at most `max` characters. */
export const checkMaxLength = (value: unknown, field: string, max: number): ValidationIssue | undefined =>
  typeof value === "string" && value.length <= max ? undefined : issue(field, "length", `${field} must be a string of at most ${max} characters`)

export const checkShortString = (value: unknown, field: string, max: number): ValidationIssue | undefined =>
  typeof value === "string" && value.length > 0 && value.length <= max
    ? undefined
    : issue(field, "length", `${field} must be a non-empty string of at most ${max} characters`)

/** A lone UTF-16 surrogate: half of a character, which UTF-8 cannot encode. */
const LONE_SURROGATE = /\p{Cs}/u

/**
 * An idempotency key: a non-empty string of at most `max` characters, well-formed Unicode. A lone
 * surrogate would be hashed as U+FFFD (UTF-8 cannot encode it), so distinct keys would name one task.
 */
export const checkIdempotencyKey = (value: unknown, field = "idempotencyKey", max = 256): ValidationIssue | undefined =>
  checkShortString(value, field, max) ??
  (LONE_SURROGATE.test(value as string) ? issue(field, "unicode", `${field} must be well-formed Unicode (no lone surrogate)`) : undefined)

/** Serialises a payload and checks its size; returns the JSON or the broken rule. */
export const checkPayload = (
  payload: unknown,
  maxBytes: number,
  field = "payload"
): { readonly json: string } | ValidationIssue => {
  let json: string | undefined
  try {
    json = JSON.stringify(payload ?? null)
  } catch {
    return issue(field, "json", `${field} must be JSON-serialisable`)
  }
  if (json === undefined) return issue(field, "json", `${field} must be JSON-serialisable`)
  const size = Buffer.byteLength(json)
  return size > maxBytes
    ? issue(field, "max_bytes", `${field} is ${size} bytes; the limit is ${maxBytes} bytes`)
    : { json }
}

export const firstIssue = (...checks: ReadonlyArray<ValidationIssue | undefined>): ValidationIssue | undefined =>
  checks.find((check) => check !== undefined)
