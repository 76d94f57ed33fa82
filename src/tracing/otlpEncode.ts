/**
 * The OTLP `ExportTraceServiceRequest` protobuf of a batch of spans, written in one pass into one
 * reused buffer. The exporter's own serializer measures every string and message before writing
 * it, character by character, and decodes every id from hex in JavaScript: ~11 µs a span, the
 * largest single cost of tracing in a worker (BENCHMARKS.md). Here ids are written by Buffer's
 * native hex decoder, the keys and names that repeat on every span are encoded once and copied,
 * and a message's length is written after its content, moving the content only when the length
 * needs more than one byte. The bytes are the same as the exporter's serializer writes for the
 * same spans (test/otlp-encode.unit.test.ts compares them).
 *
 * Field numbers are those of opentelemetry-proto (`trace/v1/trace.proto`,
 * `common/v1/common.proto`, `resource/v1/resource.proto`).
 */
import type { Attributes, AttributeValue, HrTime, Link, SpanContext } from "@opentelemetry/api"
import type { InstrumentationScope } from "@opentelemetry/core"
import type { Resource } from "@opentelemetry/resources"
import type { ReadableSpan, TimedEvent } from "@opentelemetry/sdk-trace-base"

// Wire types.
const VARINT = 0
const FIXED64 = 1
const LEN = 2
const FIXED32 = 5

/** Span flags (trace.proto `SpanFlags`): the W3C flags in the low byte, then "is remote known" and "is remote". */
const HAS_IS_REMOTE = 0x100
const IS_REMOTE = 0x200

const TWO_32 = 4_294_967_296

/** The value of each hex digit by character code; 0 for anything else. */
const HEX = new Uint8Array(128)
for (let i = 0; i < 10; i++) HEX[48 + i] = i
for (let i = 0; i < 6; i++) HEX[65 + i] = HEX[97 + i] = 10 + i

const INITIAL_BYTES = 1 << 20
/** Past this a buffer is not kept for the next request: one huge batch should not pin its memory. */
const KEEP_AT_MOST_BYTES = 16 << 20
/** Strings encoded once and copied: attribute keys, span, event and scope names. */
const CACHE_LIMIT = 2_048
const CACHE_MAX_LENGTH = 128

class Writer {
  buf = Buffer.allocUnsafe(INITIAL_BYTES)
  pos = 0
  private readonly cache = new Map<string, Buffer>()

  reset(): void {
    if (this.buf.length > KEEP_AT_MOST_BYTES) this.buf = Buffer.allocUnsafe(INITIAL_BYTES)
    this.pos = 0
  }

  ensure(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.pos + bytes) size *= 2
    const bigger = Buffer.allocUnsafe(size)
    this.buf.copy(bigger, 0, 0, this.pos)
    this.buf = bigger
  }

  varint(value: number): void {
    this.ensure(10)
    if (value < 0x80) {
      this.buf[this.pos++] = value
      return
    }
    let v = value
    while (v > 0x7f) {
      this.buf[this.pos++] = (v % 128) | 0x80
      v = Math.floor(v / 128)
    }
    this.buf[this.pos++] = v
  }

  tag(field: number, wire: number): void {
    this.varint(field * 8 + wire)
  }

  /** A negative int64: ten bytes of two's complement. */
  negative(value: number): void {
    let v = BigInt.asUintN(64, BigInt(value))
    this.ensure(10)
    while (v > 0x7fn) {
      this.buf[this.pos++] = Number(v & 0x7fn) | 0x80
      v >>= 7n
    }
    this.buf[this.pos++] = Number(v)
  }

  fixed32(value: number): void {
    this.ensure(4)
    const buf = this.buf
    buf[this.pos++] = value & 0xff
    buf[this.pos++] = (value >>> 8) & 0xff
    buf[this.pos++] = (value >>> 16) & 0xff
    buf[this.pos++] = (value >>> 24) & 0xff
  }

  double(value: number): void {
    this.ensure(8)
    this.buf.writeDoubleLE(value, this.pos)
    this.pos += 8
  }

  /**
   * Nanoseconds since the epoch of an HrTime, as fixed64. Seconds × 10⁹ exceeds a double's exact
   * range, so it is summed in two 32-bit halves: seconds = high·2¹⁶ + low, each part times 10⁹
   * stays exact (< 2⁴⁷).
   */
  time(time: HrTime): void {
    const seconds = Math.trunc(time[0])
    const low = (seconds % 65_536) * 1e9 + Math.trunc(time[1])
    const high = Math.floor(seconds / 65_536) * 1e9
    const sum = (low % TWO_32) + (high % 65_536) * 65_536
    this.fixed32(sum % TWO_32)
    this.fixed32(Math.floor(low / TWO_32) + Math.floor(high / 65_536) + Math.floor(sum / TWO_32))
  }

  /** A length-prefixed string (its UTF-8 bytes); short ASCII ones written here, the rest by Buffer. */
  string(value: string): void {
    const chars = value.length
    if (chars < 0x80) {
      this.ensure(chars + 1)
      const buf = this.buf
      const start = this.pos
      let at = start + 1
      let i = 0
      for (; i < chars; i++) {
        const code = value.charCodeAt(i)
        if (code > 0x7f) break
        buf[at++] = code
      }
      if (i === chars) {
        buf[start] = chars
        this.pos = at
        return
      }
    }
    const length = Buffer.byteLength(value)
    this.varint(length)
    this.ensure(length)
    this.pos += this.buf.write(value, this.pos)
  }

  /** A length-prefixed string likely to repeat, copied from its encoding the first time. */
  known(value: string): void {
    let encoded = this.cache.get(value)
    if (encoded === undefined) {
      if (value.length > CACHE_MAX_LENGTH) return this.string(value)
      const bytes = Buffer.from(value)
      encoded = Buffer.allocUnsafe(bytes.length + 2)
      let at = 0
      let length = bytes.length
      while (length > 0x7f) {
        encoded[at++] = (length & 0x7f) | 0x80
        length >>>= 7
      }
      encoded[at++] = length
      bytes.copy(encoded, at)
      encoded = encoded.subarray(0, at + bytes.length)
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear()
      this.cache.set(value, encoded)
    }
    const length = encoded.length
    this.ensure(length)
    const buf = this.buf
    let at = this.pos
    for (let i = 0; i < length; i++) buf[at++] = encoded[i] ?? 0
    this.pos = at
  }

  /** A length-prefixed id from its hex (16 or 8 bytes); a character that is not hex counts as 0. */
  hex(id: string): void {
    const length = id.length >>> 1
    this.varint(length)
    this.ensure(length)
    const buf = this.buf
    let at = this.pos
    for (let i = 0; i < length * 2; i += 2) buf[at++] = ((HEX[id.charCodeAt(i)] ?? 0) << 4) | (HEX[id.charCodeAt(i + 1)] ?? 0)
    this.pos = at
  }

  bytes(value: Uint8Array): void {
    this.varint(value.length)
    this.ensure(value.length)
    this.buf.set(value, this.pos)
    this.pos += value.length
  }

  /** Starts a length-delimited message: one byte kept for its length. */
  open(): number {
    this.ensure(1)
    return this.pos++
  }

  /** Ends the message opened at `at`, writing its length there, moving it when it needs more bytes. */
  close(at: number): void {
    const length = this.pos - at - 1
    if (length < 0x80) {
      this.buf[at] = length
      return
    }
    let extra = 1
    for (let v = length >>> 14; v > 0; v >>>= 7) extra++
    this.ensure(extra)
    this.buf.copyWithin(at + 1 + extra, at + 1, this.pos)
    let v = length
    let i = at
    while (v > 0x7f) {
      this.buf[i++] = (v & 0x7f) | 0x80
      v >>>= 7
    }
    this.buf[i] = v
    this.pos += extra
  }
}

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
  for (const e of s.events) {
    w.tag(11, LEN)
    const at = w.open()
    event(w, e)
    w.close(at)
  }
  w.tag(12, VARINT)
  w.varint(s.droppedEventsCount)
  for (const l of s.links) {
    w.tag(13, LEN)
    const at = w.open()
    link(w, l)
    w.close(at)
  }
  w.tag(14, VARINT)
  w.varint(s.droppedLinksCount)
  w.tag(15, LEN)
  const status = w.open()
  if (s.status.message) {
    w.tag(2, LEN)
    w.string(s.status.message)
  }
  w.tag(3, VARINT)
  w.varint(s.status.code)
  w.close(status)
  w.tag(16, FIXED32)
  w.fixed32(flagsOf(ctx, parent?.isRemote))
}

const scopeSpans = (w: Writer, scope: InstrumentationScope, spans: ReadonlyArray<ReadableSpan>): void => {
  w.tag(1, LEN)
  const at = w.open()
  w.tag(1, LEN)
  w.known(scope.name)
  if (scope.version) {
    w.tag(2, LEN)
    w.known(scope.version)
  }
  w.close(at)
  for (const s of spans) {
    w.tag(2, LEN)
    const one = w.open()
    span(w, s)
    w.close(one)
  }
  if (scope.schemaUrl) {
    w.tag(3, LEN)
    w.string(scope.schemaUrl)
  }
}

const resourceSpans = (w: Writer, resource: Resource, scopes: Map<InstrumentationScope, Array<ReadableSpan>>): void => {
  w.tag(1, LEN)
  const at = w.open()
  attributes(w, 1, resource.attributes)
  w.tag(2, VARINT)
  w.varint(0)
  w.close(at)
  for (const [scope, spans] of scopes) {
    w.tag(2, LEN)
    const one = w.open()
    scopeSpans(w, scope, spans)
    w.close(one)
  }
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
  for (const [resource, scopes] of byResource) {
    writer.tag(1, LEN)
    const at = writer.open()
    resourceSpans(writer, resource, scopes)
    writer.close(at)
  }
  return Uint8Array.prototype.slice.call(writer.buf, 0, writer.pos)
}
