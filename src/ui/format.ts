/**
 * How the page writes times, durations and ids. Times stay in UTC, as the log and the API give
 * them, with milliseconds: operators compare them with logs and traces.
 */

/** `2025-01-02 03:04:05.678` (UTC) from an RFC 3339 instant; the input as is when it is not one. */
export const formatTime = (iso: string | undefined): string => {
  if (iso === undefined) return ""
  const match = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/.exec(iso)
  if (match === null) {
    const parsed = Date.parse(iso)
    return Number.isNaN(parsed) ? iso : formatTime(new Date(parsed).toISOString())
  }
  return `${match[1] ?? ""} ${match[2] ?? ""}.${(match[3] ?? "").padEnd(3, "0").slice(0, 3)}`
}

/** `850 µs`, `12.3 ms`, `4.56 s`, `2 min 5 s`. */
export const formatDuration = (ms: number): string => {
  if (!Number.isFinite(ms) || ms < 0) return "?"
  if (ms < 1) return `${Math.round(ms * 1000)} µs`
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(2) : ms.toFixed(1)} ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)} s`
  const minutes = Math.floor(ms / 60_000)
  return `${minutes} min ${Math.round((ms - minutes * 60_000) / 1000)} s`
}

/** The first 8 characters of an id, for narrow places (the full id goes in a title). */
export const shortId = (id: string): string => (id.length > 8 ? `${id.slice(0, 8)}…` : id)

/** The trace id of a W3C traceparent, when it is one. */
export const traceIdOf = (traceparent: string | undefined): string | undefined => /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(traceparent ?? "")?.[1]

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
export const TRACE_ID = /^(?!0{32})[0-9a-f]{32}$/
