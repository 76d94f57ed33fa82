/**
 * The OTLP `ExportTraceServiceRequest` of a batch of spans: each span is encoded once, as it joins
 * its batch (`EncodedSpans`; the span's message: otlpMessages.ts), and a request copies the batch's
 * spans once, between its resource and scope headers, into an array of its own.
 *
 * Field numbers are those of opentelemetry-proto (`collector/trace/v1/trace_service.proto`,
 * `trace/v1/trace.proto`).
 */
import type { InstrumentationScope } from "@opentelemetry/core"
import type { Resource } from "@opentelemetry/resources"
import type { ReadableSpan } from "@opentelemetry/sdk-trace-base"
import { resourceOnly, scope, span } from "./otlpMessages.js"
import { LEN, Writer, putVarint, varintSize } from "./protoWriter.js"

/** One tracer's spans in a batch: each written as field 2 of `ScopeSpans` (tag, length, `Span`), one after another. */
interface ScopeGroup {
  readonly scope: InstrumentationScope
  readonly writer: Writer
  /** Where each span's bytes end in `writer`. */
  readonly ends: Array<number>
}

/** Where a `ScopeSpans` message's parts are: its own fields in the plan's headers around its group's spans. */
interface ScopePlan {
  readonly group: ScopeGroup
  /** Its scope field starts here; the spans go at `spansAt`, then the rest up to `end`. */
  readonly head: number
  readonly spansAt: number
  readonly end: number
  /** The message's length (without its tag and length). */
  readonly length: number
}

/** Where a `ResourceSpans` message's parts are: its resource field, its scopes, then its schema URL. */
interface ResourcePlan {
  readonly head: number
  readonly scopesAt: number
  readonly tailAt: number
  readonly end: number
  readonly length: number
  readonly scopes: ReadonlyArray<ScopePlan>
}

interface RequestPlan {
  readonly resources: ReadonlyArray<ResourcePlan>
  /** The request's size in bytes. */
  readonly size: number
  /** The buffer holding every resource's and scope's own fields (the shared writer's, valid until its next use). */
  readonly headers: Uint8Array
}

/** `ExportTraceServiceRequest.resource_spans` (1) and `ResourceSpans.scope_spans` (2), length-delimited: one byte each. */
const RESOURCE_SPANS_TAG = (1 << 3) | LEN
const SCOPE_SPANS_TAG = (2 << 3) | LEN

/** A group's first buffer: grown by doubling, ~2 MB for a batch of 4,096 of codeq's spans. */
const GROUP_INITIAL_BYTES = 64 * 1024
/**
 * Writers of batches already sent, kept for the next ones (at most 8 MiB of them): a batch's
 * buffers grow by doubling to ~2 MB, and a steady flow of batches then allocates and copies none.
 */
const spareWriters: Array<Writer> = []
const SPARE_BYTES = 8 * 2 ** 20
const spare = (writer: Writer): void => {
  let kept = writer.buf.length
  for (const w of spareWriters) kept += w.buf.length
  if (kept <= SPARE_BYTES) spareWriters.push(writer)
}

/** Made at the first request, for its resources' and scopes' own fields: a process that never exports spans never holds it. */
let shared: Writer | undefined
/** Resources' and scopes' own fields: a few hundred bytes a request. */
const HEADERS_INITIAL_BYTES = 4_096

/**
 * A batch of spans encoded as they are added, grouped by resource and then by tracer, waiting to
 * be sent as one `ExportTraceServiceRequest`.
 *
 * WHY encode when a span ends rather than when its batch is sent: a batch waits up to a second
 * for its 4,096 spans (setup.ts), long enough for every span object in it to survive the young
 * generation's collections, be copied and promoted. Encoded, a waiting span is ~300–500 bytes
 * outside the heap, and its objects die young: in a bench of the span pipeline alone (3,000
 * tasks/s, three spans each, to a local receiver) garbage collection took 3.0–5.9 µs a task
 * against 6.5–10.3 with the spans queued as objects.
 */
export class EncodedSpans {
  private readonly groups = new Map<Resource, Map<InstrumentationScope, ScopeGroup>>()
  private spans = 0

  /** The spans given, in one batch. */
  static of(spans: Iterable<ReadableSpan>): EncodedSpans {
    const batch = new EncodedSpans()
    for (const s of spans) batch.add(s)
    return batch
  }

  /** How many spans the batch holds. */
  get count(): number {
    return this.spans
  }

  /** Encodes the span into the batch; on a throw the batch is as it was. */
  add(s: ReadableSpan): void {
    const group = this.group(s.resource, s.instrumentationScope)
    const before = group.writer.pos
    try {
      group.writer.nested(2, span, s)
    } catch (cause) {
      group.writer.pos = before
      if (group.ends.length === 0) this.forget(s.resource, s.instrumentationScope)
      throw cause
    }
    group.ends.push(group.writer.pos)
    this.spans++
  }

  /** The resources of the batch's spans (whose attributes the request encodes). */
  resources(): Array<Resource> {
    return [...this.groups.keys()]
  }

  /** The request's size in bytes, without building it. */
  requestSize(): number {
    return this.plan().size
  }

  /**
   * The request's bytes: written over the start of `into` when it has room for them (a view of
   * it), otherwise into an array of exactly their length whose buffer holds nothing else (which the
   * exporter can hand on as it is: otlpExporter.ts). Every message's length is known before it is
   * written (`plan`), so the spans' bytes are copied once and never moved: a batch of 4,096 of
   * codeq's spans is ~1.6 MB, and writing the lengths after the content moved all of it once per
   * enclosing message, then copied it out of the reused buffer.
   */
  requestBytes(into?: Uint8Array): Uint8Array {
    const { resources, size, headers } = this.plan()
    // Not zeroed first: the plan covers every byte.
    const out = into !== undefined && into.length >= size ? into.subarray(0, size) : Buffer.allocUnsafeSlow(size)
    let at = 0
    const copy = (from: Uint8Array, start: number, end: number) => {
      out.set(from.subarray(start, end), at)
      at += end - start
    }
    for (const r of resources) {
      out[at++] = RESOURCE_SPANS_TAG
      at = putVarint(out, at, r.length)
      copy(headers, r.head, r.scopesAt)
      for (const s of r.scopes) {
        out[at++] = SCOPE_SPANS_TAG
        at = putVarint(out, at, s.length)
        copy(headers, s.head, s.spansAt)
        copy(s.group.writer.buf, 0, s.group.writer.pos)
        copy(headers, s.spansAt, s.end)
      }
      copy(headers, r.tailAt, r.end)
    }
    return out
  }

  /**
   * The request's layout: each resource's and scope's own fields (`Resource`, `InstrumentationScope`,
   * schema URLs) written into the shared writer, and the length of every `ResourceSpans` and
   * `ScopeSpans` message they and the spans make.
   */
  private plan(): RequestPlan {
    const w = (shared ??= new Writer(HEADERS_INITIAL_BYTES))
    w.reset()
    const resources: Array<ResourcePlan> = []
    let size = 0
    for (const [resource, groups] of this.groups) {
      const head = w.pos
      w.nested(1, resourceOnly, resource)
      const scopesAt = w.pos
      const scopes: Array<ScopePlan> = []
      let length = scopesAt - head
      for (const group of groups.values()) {
        const scopeHead = w.pos
        w.nested(1, scope, group.scope)
        const spansAt = w.pos
        if (group.scope.schemaUrl) {
          w.tag(3, LEN)
          w.string(group.scope.schemaUrl)
        }
        const scopeLength = w.pos - scopeHead + group.writer.pos
        scopes.push({ group, head: scopeHead, spansAt, end: w.pos, length: scopeLength })
        length += 1 + varintSize(scopeLength) + scopeLength
      }
      const tailAt = w.pos
      if (resource.schemaUrl) {
        w.tag(3, LEN)
        w.string(resource.schemaUrl)
      }
      length += w.pos - tailAt
      resources.push({ head, scopesAt, tailAt, end: w.pos, length, scopes })
      size += 1 + varintSize(length) + length
    }
    return { resources, size, headers: w.buf }
  }

  /**
   * Gives the batch's buffers back for later batches, once its request is built or it is split:
   * it holds no spans after (its `count` stays, for whoever counts the export's outcome).
   */
  release(): void {
    for (const scopes of this.groups.values()) {
      for (const group of scopes.values()) spare(group.writer)
    }
    this.groups.clear()
  }

  /** The spans in `parts` batches of about equal counts, in order (each span's bytes copied). */
  split(parts: number): Array<EncodedSpans> {
    const size = Math.max(1, Math.ceil(this.spans / Math.max(1, parts)))
    const out: Array<EncodedSpans> = []
    let part = new EncodedSpans()
    for (const [resource, scopes] of this.groups) {
      for (const group of scopes.values()) {
        let start = 0
        for (const end of group.ends) {
          if (part.spans === size) {
            out.push(part)
            part = new EncodedSpans()
          }
          const target = part.group(resource, group.scope)
          target.writer.raw(group.writer.buf.subarray(start, end))
          target.ends.push(target.writer.pos)
          part.spans++
          start = end
        }
      }
    }
    if (part.spans > 0) out.push(part)
    return out
  }

  /** Drops a group that holds no span (its first failed), so that the request has no empty one. */
  private forget(resource: Resource, sc: InstrumentationScope): void {
    const scopes = this.groups.get(resource)
    const group = scopes?.get(sc)
    if (scopes === undefined || group === undefined) return
    scopes.delete(sc)
    if (scopes.size === 0) this.groups.delete(resource)
    spare(group.writer)
  }

  private group(resource: Resource, sc: InstrumentationScope): ScopeGroup {
    let scopes = this.groups.get(resource)
    if (scopes === undefined) this.groups.set(resource, (scopes = new Map()))
    let group = scopes.get(sc)
    if (group === undefined) {
      const writer = spareWriters.pop() ?? new Writer(GROUP_INITIAL_BYTES)
      writer.reset()
      scopes.set(sc, (group = { scope: sc, writer, ends: [] }))
    }
    return group
  }
}
