/**
 * `tracestate` as W3C Trace Context Level 2 defines it: list members in order, keys of lowercase
 * letters, digits and `_ - * / @` after a first lowercase letter (Level 1 allowed `@` only as a
 * single tenant separator, and OpenTelemetry's TraceState still drops such keys — `foo@=1`), values
 * of printable ASCII without `,` and `=` (not ending in a space), at most 32 members. A member
 * that breaks a rule is dropped; the others keep their order. Pure and small: the header codec and
 * the propagator use it so a producer's tracestate reaches the webhook as it was sent.
 */
import type { TraceState } from "@opentelemetry/api"

const KEY = /^[a-z][a-z0-9_\-*/@]{0,255}$/
const VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/
const MAX_MEMBERS = 32

export class W3CTraceState implements TraceState {
  private constructor(private readonly members: ReadonlyArray<readonly [string, string]>) {}

  /** Parses a `tracestate` header value (or several joined by commas). */
  static parse(header: string | undefined): W3CTraceState {
    const members: Array<readonly [string, string]> = []
    const seen = new Set<string>()
    for (const part of (header ?? "").split(",")) {
      const member = part.trim()
      if (member === "") continue
      const eq = member.indexOf("=")
      if (eq <= 0) continue
      const key = member.slice(0, eq)
      const value = member.slice(eq + 1)
      if (!KEY.test(key) || !VALUE.test(value) || seen.has(key)) continue
      seen.add(key)
      members.push([key, value])
      if (members.length === MAX_MEMBERS) break
    }
    return new W3CTraceState(members)
  }

  get(key: string): string | undefined {
    return this.members.find(([k]) => k === key)?.[1]
  }

  /** A new state with `key` set, moved to the front as the spec requires of an update. */
  set(key: string, value: string): TraceState {
    if (!KEY.test(key) || !VALUE.test(value)) return this
    return new W3CTraceState([[key, value] as const, ...this.members.filter(([k]) => k !== key)].slice(0, MAX_MEMBERS))
  }

  unset(key: string): TraceState {
    return new W3CTraceState(this.members.filter(([k]) => k !== key))
  }

  serialize(): string {
    return this.members.map(([k, v]) => `${k}=${v}`).join(",")
  }
}
