/**
 * Rebuilt spans in OpenTelemetry's own shapes: the OTLP/JSON `ExportTraceServiceRequest` (the
 * proto3 JSON mapping: lowerCamelCase fields, hex ids, 64-bit integers as decimal strings, enums
 * as numbers — one request per line, as a Collector's `otlpjsonfile` receiver reads them), and
 * SDK `ReadableSpan`s with their original ids, explicit start and end, handed to the OTLP gRPC
 * exporter — so traces the head sampler dropped, or that were lost while the collector was down,
 * can be restored.
 */
import type { AttributeValue, Attributes, HrTime, SpanContext, TraceState } from "@opentelemetry/api"
import { ExportResultCode } from "@opentelemetry/core"
import { defaultResource, resourceFromAttributes, type Resource } from "@opentelemetry/resources"
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base"
import { ATTR_SERVICE_NAME } from "@opentelemetry/semantic-conventions"
import { spansFailed } from "../tracing/export.js"
import { hrTimeOf } from "./core.js"
import type { ReplaySpan } from "./model.js"

// OTLP span flags: the low byte is the W3C trace flags; these say whether the parent was remote.
const HAS_IS_REMOTE = 0x100
const IS_REMOTE = 0x200

type AnyValueJson =
  | { readonly stringValue: string }
  | { readonly boolValue: boolean }
  | { readonly intValue: string }
  | { readonly doubleValue: number }
  | { readonly arrayValue: { readonly values: ReadonlyArray<AnyValueJson> } }

const anyValue = (value: AttributeValue | null | undefined): AnyValueJson => {
  if (typeof value === "string") return { stringValue: value }
  if (typeof value === "boolean") return { boolValue: value }
  if (typeof value === "number") return Number.isInteger(value) ? { intValue: String(value) } : { doubleValue: value }
  if (Array.isArray(value)) return { arrayValue: { values: value.map((v: AttributeValue | null | undefined) => anyValue(v)) } }
  return { stringValue: "" }
}

export const otlpAttributes = (attributes: Attributes) =>
  Object.entries(attributes)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => ({ key, value: anyValue(value) }))

/**
 * One span in the OTLP/JSON mapping. Every parent of a transition span lives in another process
 * or was persisted with the task, so it is marked remote, as the live span's parent is.
 */
export const otlpSpanJson = (span: ReplaySpan) => ({
  traceId: span.traceId,
  spanId: span.spanId,
  ...(span.traceState !== undefined ? { traceState: span.traceState } : {}),
  ...(span.parentSpanId !== undefined ? { parentSpanId: span.parentSpanId } : {}),
  flags: (span.traceFlags & 0xff) | HAS_IS_REMOTE | (span.parentSpanId !== undefined ? IS_REMOTE : 0),
  name: span.name,
  kind: span.kind + 1,
  startTimeUnixNano: span.startNs,
  endTimeUnixNano: span.endNs,
  attributes: otlpAttributes(span.attributes),
  status: { code: span.status.code, ...(span.status.message !== undefined ? { message: span.status.message } : {}) }
})

/** An `ExportTraceServiceRequest` of `spans` under one resource, grouped by tracer (scope). */
export const otlpJsonRequest = (spans: ReadonlyArray<ReplaySpan>, serviceName: string) => {
  const byScope = new Map<string, Array<ReplaySpan>>()
  for (const span of spans) {
    const list = byScope.get(span.scope)
    if (list === undefined) byScope.set(span.scope, [span])
    else list.push(span)
  }
  return {
    resourceSpans: [
      {
        resource: { attributes: otlpAttributes({ [ATTR_SERVICE_NAME]: serviceName }) },
        scopeSpans: [...byScope].map(([scope, list]) => ({ scope: { name: scope }, spans: list.map(otlpSpanJson) }))
      }
    ]
  }
}

/** A trace state kept exactly as recorded (the SDK's parser would drop keys it does not know). */
const verbatimTraceState = (raw: string): TraceState => ({
  serialize: () => raw,
  get: (key) => raw.split(",").map((member) => member.trim().split("=")).find(([k]) => k === key)?.[1],
  set: () => verbatimTraceState(raw),
  unset: () => verbatimTraceState(raw)
})

const duration = (start: HrTime, end: HrTime): HrTime => {
  let seconds = end[0] - start[0]
  let nanos = end[1] - start[1]
  if (nanos < 0) {
    seconds -= 1
    nanos += 1_000_000_000
  }
  return [seconds, nanos]
}

/** The resource rebuilt spans are exported under: the SDK's defaults and the service name. */
export const replayResource = (serviceName: string): Resource => defaultResource().merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: serviceName }))

/** A rebuilt span as the SDK's exporters take it: original ids, explicit start and end. */
export const readableSpanOf = (span: ReplaySpan, resource: Resource): ReadableSpan => {
  const context: SpanContext = {
    traceId: span.traceId,
    spanId: span.spanId,
    traceFlags: span.traceFlags,
    isRemote: false,
    ...(span.traceState !== undefined ? { traceState: verbatimTraceState(span.traceState) } : {})
  }
  const startTime = hrTimeOf(span.startNs)
  const endTime = hrTimeOf(span.endNs)
  return {
    name: span.name,
    kind: span.kind,
    spanContext: () => context,
    ...(span.parentSpanId !== undefined ? { parentSpanContext: { traceId: span.traceId, spanId: span.parentSpanId, traceFlags: span.traceFlags, isRemote: true } } : {}),
    startTime,
    endTime,
    duration: duration(startTime, endTime),
    status: span.status,
    attributes: span.attributes,
    links: [],
    events: [],
    ended: true,
    resource,
    instrumentationScope: { name: span.scope },
    droppedAttributesCount: 0,
    droppedEventsCount: 0,
    droppedLinksCount: 0
  }
}

/** Sends rebuilt spans through an exporter in batches, each export awaited; counts the outcome. */
export class SpanShipper {
  exported = 0
  failed = 0
  lastError: string | undefined
  private buffer: Array<ReadableSpan> = []
  private readonly resource: Resource

  constructor(
    private readonly exporter: SpanExporter,
    serviceName: string,
    private readonly batch = 512
  ) {
    this.resource = replayResource(serviceName)
  }

  /** Queues the spans; exports a batch whenever one is full. */
  async add(spans: ReadonlyArray<ReplaySpan>): Promise<void> {
    for (const span of spans) this.buffer.push(readableSpanOf(span, this.resource))
    while (this.buffer.length >= this.batch) await this.send(this.buffer.splice(0, this.batch))
  }

  /** Exports what is queued and shuts the exporter down. */
  async close(): Promise<void> {
    if (this.buffer.length > 0) await this.send(this.buffer.splice(0))
    await this.exporter.shutdown()
  }

  private failuresInARow = 0

  private send(spans: Array<ReadableSpan>): Promise<void> {
    // A collector that refused three batches in a row is taken as down: the rest are counted as
    // failed at once rather than each waiting out the export timeout.
    if (this.failuresInARow >= 3) {
      this.failed += spans.length
      return Promise.resolve()
    }
    return new Promise((resolve) =>
      this.exporter.export(spans, (result) => {
        if (result.code === ExportResultCode.SUCCESS) {
          this.exported += spans.length
          this.failuresInARow = 0
        } else {
          // A batch sent in parts (over a gRPC server's message limit) may have delivered some.
          const failed = spansFailed(result.error, spans.length)
          this.failed += failed
          this.exported += spans.length - failed
          this.failuresInARow++
          this.lastError = result.error?.message ?? "export failed"
        }
        resolve()
      })
    )
  }
}
