/**
 * The OTLP `ExportTraceServiceRequest` protobuf of a batch of spans, written in one pass into one
 * reused buffer (protoWriter.ts). The exporter's own serializer measures every string and message
 * before writing it, character by character: ~11 µs a span, the largest single cost of tracing in
 * a worker (a CPU profile of the bench's `tracing` variant). Here the keys and names that repeat
 * on every span are encoded once and copied, ids are decoded from hex by a table, and a message's
 * length is written after its content, moving the content only when the length needs more than
 * one byte. The bytes are the same as the exporter's serializer writes for the same spans
 * (test/otlp-encode.unit.test.ts compares them).
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

const attributes = (w: Writer, field: number, attrs: Attributes): void => {
  for (const key of Object.keys(attrs)) {
    w.tag(field, LEN)
    const at = w.open()
    keyValue(w, key, attrs[key])
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

const span = (w: Writer, s: ReadableSpan): void => {
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

const scope = (w: Writer, sc: InstrumentationScope): void => {
  w.tag(1, LEN)
  w.known(sc.name)
  if (sc.version) {
    w.tag(2, LEN)
    w.known(sc.version)
  }
}

const scopeSpans = (w: Writer, [sc, spans]: readonly [InstrumentationScope, ReadonlyArray<ReadableSpan>]): void => {
  w.nested(1, scope, sc)
  for (const s of spans) w.nested(2, span, s)
  if (sc.schemaUrl) {
    w.tag(3, LEN)
    w.string(sc.schemaUrl)
  }
}

const resourceOnly = (w: Writer, resource: Resource): void => {
  attributes(w, 1, resource.attributes)
  w.tag(2, VARINT)
  w.varint(0)
}

const resourceSpans = (w: Writer, [resource, scopes]: readonly [Resource, Map<InstrumentationScope, Array<ReadableSpan>>]): void => {
  w.nested(1, resourceOnly, resource)
  for (const entry of scopes) w.nested(2, scopeSpans, entry)
  if (resource.schemaUrl) {
    w.tag(3, LEN)
    w.string(resource.schemaUrl)
  }
}

/** Made at the first export: a process that never exports spans never holds the buffer. */
let shared: Writer | undefined

/** The request's bytes, in a fresh array (the writer's buffer is reused for the next request). */
export const encodeTraceExportRequest = (spans: ReadonlyArray<ReadableSpan>): Uint8Array => {
  const byResource = new Map<Resource, Map<InstrumentationScope, Array<ReadableSpan>>>()
  for (const s of spans) {
    let scopes = byResource.get(s.resource)
    if (scopes === undefined) byResource.set(s.resource, (scopes = new Map()))
    let list = scopes.get(s.instrumentationScope)
    if (list === undefined) scopes.set(s.instrumentationScope, (list = []))
    list.push(s)
  }
  const writer = (shared ??= new Writer())
  writer.reset()
  for (const entry of byResource) writer.nested(1, resourceSpans, entry)
  return Uint8Array.prototype.slice.call(writer.buf, 0, writer.pos)
}
