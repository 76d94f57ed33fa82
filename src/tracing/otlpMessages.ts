/**
 * The OTLP messages of one span, its scope and its resource, written with protoWriter.ts for the
 * request encoder (otlpEncode.ts). The exporter's own serializer measures every string and message
 * before writing it, character by character: ~11 µs a span, the largest single cost of tracing in a
 * worker (a CPU profile of the bench's `tracing` variant). Here the keys and names that repeat on
 * every span are encoded once and copied, so are whole attribute pairs that repeat (`cachedPair`),
 * ids are decoded from hex by a table, and a message's length is written after its content, moving
 * the content only when the length needs more than one byte. The bytes are the same as the
 * exporter's serializer writes for the same spans (test/otlp-encode.unit.test.ts compares them).
 *
 * Field numbers are those of opentelemetry-proto (`trace/v1/trace.proto`,
 * `common/v1/common.proto`, `resource/v1/resource.proto`).
 */
import type { Attributes, AttributeValue, Link, SpanContext, SpanStatus } from "@opentelemetry/api"
import type { InstrumentationScope } from "@opentelemetry/core"
import type { Resource } from "@opentelemetry/resources"
import type { ReadableSpan, TimedEvent } from "@opentelemetry/sdk-trace-base"
import { FIXED32, FIXED64, LEN, VARINT, Writer } from "./protoWriter.js"

/** Span flags (trace.proto `SpanFlags`): the W3C flags in the low byte, then "is remote known" and "is remote". */
const HAS_IS_REMOTE = 0x100
const IS_REMOTE = 0x200

const anyValue = (w: Writer, value: AttributeValue | Uint8Array | Record<string, unknown> | null | undefined): void => {
  if (typeof value === "string") {
    w.tag(1, LEN)
    w.string(value)
  } else if (typeof value === "boolean") {
    w.tag(2, VARINT)
    w.varint(value ? 1 : 0)
  } else if (typeof value === "number") {
    if (Number.isInteger(value) && value >= -(2 ** 63) && value < 2 ** 63) {
      w.tag(3, VARINT)
      if (value >= 0) w.varint(value)
      else w.negative(value)
    } else {
      w.tag(4, FIXED64)
      w.double(value)
    }
  } else if (value instanceof Uint8Array) {
    w.tag(7, LEN)
    w.bytes(value)
  } else if (Array.isArray(value)) {
    w.tag(5, LEN)
    const list = w.open()
    for (const item of value as ReadonlyArray<AttributeValue | null | undefined>) {
      w.tag(1, LEN)
      const at = w.open()
      anyValue(w, item)
      w.close(at)
    }
    w.close(list)
  } else if (typeof value === "object" && value !== null) {
    w.tag(6, LEN)
    const list = w.open()
    for (const key of Object.keys(value)) {
      w.tag(1, LEN)
      const at = w.open()
      keyValue(w, key, (value as Record<string, AttributeValue>)[key])
      w.close(at)
    }
    w.close(list)
  }
}

const keyValue = (w: Writer, key: string, value: AttributeValue | undefined): void => {
  w.tag(1, LEN)
  w.known(key)
  w.tag(2, LEN)
  const at = w.open()
  anyValue(w, value)
  w.close(at)
}

/**
 * Encoded `KeyValue`s by key and then by value, for the attributes whose values repeat from span
 * to span (a command, a tenant, a worker, a status: all of codeq's but the task id), copied whole
 * instead of encoded. A key is no longer cached once it has had `VALUES_PER_KEY` values (a task
 * id), and the whole cache starts again when it holds `PAIRS_LIMIT` keys or pairs.
 */
const pairs = new Map<string, Map<AttributeValue, Buffer> | null>()
let pairCount = 0
const VALUES_PER_KEY = 64
const PAIRS_LIMIT = 4_096
/** Longer strings are encoded each time: one would take more than it saves. */
const PAIR_MAX_CHARS = 256
const scratch = new Writer(256)

/** The cached `KeyValue` of a scalar attribute, made on its first use; undefined when not cached. */
const cachedPair = (key: string, value: AttributeValue | undefined): Buffer | undefined => {
  if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") return undefined
  let values = pairs.get(key)
  if (values === null) return undefined
  const found = values?.get(value)
  if (found !== undefined) return found
  if (typeof value === "string" && value.length > PAIR_MAX_CHARS) return undefined
  if (values !== undefined && values.size >= VALUES_PER_KEY) {
    // As many values as tasks: caching would only fill the cache.
    pairCount -= values.size
    pairs.set(key, null)
    return undefined
  }
  if (pairCount >= PAIRS_LIMIT || pairs.size >= PAIRS_LIMIT) {
    pairs.clear()
    pairCount = 0
    values = undefined
  }
  if (values === undefined) pairs.set(key, (values = new Map()))
  scratch.reset()
  keyValue(scratch, key, value)
  const encoded = Buffer.from(scratch.buf.subarray(0, scratch.pos))
  values.set(value, encoded)
  pairCount++
  return encoded
}

const attributes = (w: Writer, field: number, attrs: Attributes): void => {
  for (const key of Object.keys(attrs)) {
    const value = attrs[key]
    w.tag(field, LEN)
    const cached = cachedPair(key, value)
    if (cached !== undefined) {
      w.bytes(cached)
      continue
    }
    const at = w.open()
    keyValue(w, key, value)
    w.close(at)
  }
}

const flagsOf = (ctx: SpanContext, isRemote: boolean | undefined): number => (ctx.traceFlags & 0xff) | HAS_IS_REMOTE | (isRemote === true ? IS_REMOTE : 0)

const event = (w: Writer, e: TimedEvent): void => {
  w.tag(1, FIXED64)
  w.time(e.time)
  w.tag(2, LEN)
  w.known(e.name)
  if (e.attributes !== undefined) attributes(w, 3, e.attributes)
  w.tag(4, VARINT)
  w.varint(e.droppedAttributesCount ?? 0)
}

const link = (w: Writer, l: Link): void => {
  w.tag(1, LEN)
  w.hex(l.context.traceId)
  w.tag(2, LEN)
  w.hex(l.context.spanId)
  const traceState = l.context.traceState?.serialize()
  if (traceState) {
    w.tag(3, LEN)
    w.string(traceState)
  }
  if (l.attributes !== undefined) attributes(w, 4, l.attributes)
  w.tag(5, VARINT)
  w.varint(l.droppedAttributesCount ?? 0)
  w.tag(6, FIXED32)
  w.fixed32(flagsOf(l.context, l.context.isRemote))
}

const status = (w: Writer, st: SpanStatus): void => {
  if (st.message) {
    w.tag(2, LEN)
    w.string(st.message)
  }
  w.tag(3, VARINT)
  w.varint(st.code)
}

/** A `Span` message's fields. */
export const span = (w: Writer, s: ReadableSpan): void => {
  const ctx = s.spanContext()
  w.tag(1, LEN)
  w.hex(ctx.traceId)
  w.tag(2, LEN)
  w.hex(ctx.spanId)
  const traceState = ctx.traceState?.serialize()
  if (traceState) {
    w.tag(3, LEN)
    w.string(traceState)
  }
  const parent = s.parentSpanContext
  if (parent?.spanId) {
    w.tag(4, LEN)
    w.hex(parent.spanId)
  }
  w.tag(5, LEN)
  w.known(s.name)
  // The proto's SpanKind counts from 1 (0 is "unspecified"); the API's from 0.
  w.tag(6, VARINT)
  w.varint(s.kind + 1)
  w.tag(7, FIXED64)
  w.time(s.startTime)
  w.tag(8, FIXED64)
  w.time(s.endTime)
  attributes(w, 9, s.attributes)
  w.tag(10, VARINT)
  w.varint(s.droppedAttributesCount)
  for (const e of s.events) w.nested(11, event, e)
  w.tag(12, VARINT)
  w.varint(s.droppedEventsCount)
  for (const l of s.links) w.nested(13, link, l)
  w.tag(14, VARINT)
  w.varint(s.droppedLinksCount)
  w.nested(15, status, s.status)
  w.tag(16, FIXED32)
  w.fixed32(flagsOf(ctx, parent?.isRemote))
}

/** An `InstrumentationScope` message's fields. */
export const scope = (w: Writer, sc: InstrumentationScope): void => {
  w.tag(1, LEN)
  w.known(sc.name)
  if (sc.version) {
    w.tag(2, LEN)
    w.known(sc.version)
  }
}

/** A `Resource` message's fields. */
export const resourceOnly = (w: Writer, resource: Resource): void => {
  attributes(w, 1, resource.attributes)
  w.tag(2, VARINT)
  w.varint(0)
}
