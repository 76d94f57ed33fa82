/**
 * codeq's OTLP trace request encoder (src/tracing/otlpEncode.ts, otlpMessages.ts) against the exporter's own
 * serializer: for real SDK spans of every shape, the same bytes.
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace } from "@opentelemetry/api"
import { TraceState } from "@opentelemetry/core"
import { ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer"
import { resourceFromAttributes } from "@opentelemetry/resources"
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace-base"
import { describe, expect, it } from "vitest"
import { EncodedSpans } from "../src/tracing/otlpEncode.js"

const REMOTE = { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", traceFlags: TraceFlags.SAMPLED, isRemote: true, traceState: new TraceState("vendor=a,other=b") }

/** Spans ended through a real provider with `resource`, kept in memory. */
const recorder = (resource = resourceFromAttributes({ "service.name": "codeq-test", "host.cores": 2, "deployment.ids": ["a", "b"] })) => {
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ resource, spanProcessors: [new SimpleSpanProcessor(exporter)] })
  return { provider, spans: (): Array<ReadableSpan> => exporter.getFinishedSpans() }
}

/** codeq's request for these spans, in one batch. */
const encodeTraceExportRequest = (spans: ReadonlyArray<ReadableSpan>): Uint8Array => EncodedSpans.of(spans).requestBytes()

const official = (spans: ReadonlyArray<ReadableSpan>): Buffer => Buffer.from(ProtobufTraceSerializer.serializeRequest([...spans]) ?? new Uint8Array())

describe("the OTLP request encoder", () => {
  it("writes the exporter's bytes for spans of every shape", () => {
    const { provider, spans } = recorder()
    const repository = provider.getTracer("codeq.repository", "1.2.3", { schemaUrl: "https://opentelemetry.io/schemas/1.30.0" })
    const results = provider.getTracer("codeq.results")

    repository.startSpan("codeq.task.claim", { attributes: { "codeq.worker_id": "w-1", "codeq.attempt": 3, "codeq.lease_seconds": 30, "codeq.has_webhook": false } }).end()
    const parent = trace.setSpanContext(ROOT_CONTEXT, REMOTE)
    const child = results.startSpan(
      "codeq.submit_result ünïcødé",
      {
        kind: SpanKind.CONSUMER,
        attributes: { ratio: 0.25, big: 2 ** 40, negative: -7, huge: 2 ** 60, text: "ñ".repeat(200), list: [1, 2, 3], words: ["x", "y"], flags: [true, false] },
        links: [{ context: REMOTE, attributes: { why: "follows" } }, { context: { ...REMOTE, isRemote: false, traceState: undefined } }]
      },
      parent
    )
    child.addEvent("retry", { n: 1, "why ünïcødé": "x".repeat(300) })
    child.addEvent("plain")
    child.setStatus({ code: SpanStatusCode.ERROR, message: "task failed" })
    child.end()
    for (const kind of [SpanKind.INTERNAL, SpanKind.SERVER, SpanKind.CLIENT, SpanKind.PRODUCER]) results.startSpan(`kind-${kind}`, { kind }).end()
    results.startSpan("ok", {}, parent).setStatus({ code: SpanStatusCode.OK }).end()

    expect(Buffer.from(encodeTraceExportRequest(spans()))).toEqual(official(spans()))
  })

  it("writes the exporter's bytes for a batch whose messages need three-byte lengths, and for none", () => {
    const { provider, spans } = recorder()
    const tracer = provider.getTracer("codeq.scheduler")
    for (let i = 0; i < 2_000; i++) tracer.startSpan("codeq.task.create", { attributes: { "codeq.task_id": `task-${i}`, "codeq.priority": i % 10 } }).end()
    const encoded = Buffer.from(encodeTraceExportRequest(spans()))
    expect(encoded.length).toBeGreaterThan(1 << 14)
    expect(encoded).toEqual(official(spans()))
    expect(Buffer.from(encodeTraceExportRequest([]))).toEqual(official([]))
  })

  it("writes the exporter's bytes for repeated attributes (copied once encoded), keys with too many values to keep, and more pairs than are kept", () => {
    const { provider, spans } = recorder()
    const tracer = provider.getTracer("codeq.repository")
    for (let i = 0; i < 6_000; i++) {
      tracer
        .startSpan("codeq.task.claim", {
          attributes: {
            "codeq.tenant_id": `tenant-${i % 3}`,
            "codeq.task_id": `task-${i}`,
            // Past 64 values a key is no longer kept: the first ones were, the later ones are not.
            "codeq.priority": i % 100,
            // Equal as map keys, not as attributes: 1, "1", true, 0 and -0.
            same: [1, "1", true, 0, -0][i % 5] as number | string | boolean,
            ratio: i % 2 === 0 ? 0.5 : Number.NaN,
            long: "z".repeat(300),
            [`key-${i % 5_000}`]: "x"
          }
        })
        .end()
    }
    expect(Buffer.from(encodeTraceExportRequest(spans()))).toEqual(official(spans()))
    // Encoded again, now from what was kept.
    expect(Buffer.from(encodeTraceExportRequest(spans()))).toEqual(official(spans()))
  })

  it("groups spans by resource, then by tracer, as the exporter does", () => {
    const one = recorder(resourceFromAttributes({ "service.name": "one" }))
    const two = recorder(resourceFromAttributes({ "service.name": "two" }))
    one.provider.getTracer("a").startSpan("a1").end()
    two.provider.getTracer("b").startSpan("b1").end()
    one.provider.getTracer("c").startSpan("c1").end()
    one.provider.getTracer("a").startSpan("a2").end()
    const mixed = [one.spans()[0], two.spans()[0], one.spans()[1], one.spans()[2]].filter((s): s is ReadableSpan => s !== undefined)
    expect(Buffer.from(encodeTraceExportRequest(mixed))).toEqual(official(mixed))
  })

  it("writes the exporter's bytes for resources and tracers with schema URLs, each message's length known before its content, in an array that is all of its buffer", () => {
    const one = recorder(resourceFromAttributes({ "service.name": "one", note: "r".repeat(300) }, { schemaUrl: "https://opentelemetry.io/schemas/1.30.0" }))
    const two = recorder(resourceFromAttributes({ "service.name": "two" }))
    const tracers = [
      one.provider.getTracer("a", "1.0.0", { schemaUrl: "https://example.com/scope-a" }),
      two.provider.getTracer("b", undefined, { schemaUrl: "https://example.com/scope-b" }),
      one.provider.getTracer("c")
    ]
    // Sizes around one- and two-byte lengths for the scope and resource messages, then past three.
    for (const count of [1, 2, 3, 40, 400, 1_500]) {
      for (let i = 0; i < count; i++) tracers[i % tracers.length]?.startSpan(`span-${i}`, { attributes: { "codeq.task_id": `task-${i}` } }).end()
      const spans = [...one.spans(), ...two.spans()]
      const batch = EncodedSpans.of(spans)
      const bytes = batch.requestBytes()
      expect(bytes.length, `${count}`).toBe(batch.requestSize())
      // The exporter hands the buffer on as the request (otlpExporter.ts): nothing else may be in it.
      expect(bytes.byteOffset).toBe(0)
      expect(bytes.byteLength).toBe(bytes.buffer.byteLength)
      expect(Buffer.from(bytes), `${count}`).toEqual(official(spans))
    }
  })

  it("returns bytes of its own: a later request does not overwrite an earlier one", () => {
    const { provider, spans } = recorder()
    provider.getTracer("t").startSpan("first").end()
    const first = encodeTraceExportRequest(spans())
    const copy = Buffer.from(first)
    provider.getTracer("t").startSpan("second, longer than the first").end()
    encodeTraceExportRequest(spans())
    expect(Buffer.from(first)).toEqual(copy)
  })
})

describe("EncodedSpans", () => {
  /** Spans of two resources and three tracers, interleaved, with attributes long enough for two-byte lengths. */
  const mixedSpans = (count: number) => {
    const one = recorder(resourceFromAttributes({ "service.name": "one" }))
    const two = recorder(resourceFromAttributes({ "service.name": "two" }))
    const tracers = [one.provider.getTracer("a"), two.provider.getTracer("b"), one.provider.getTracer("c")]
    const ended: Array<ReadableSpan> = []
    for (let i = 0; i < count; i++) {
      const tracer = tracers[i % tracers.length]
      tracer?.startSpan(`span-${i}`, { attributes: { "codeq.task_id": `task-${i}`, note: "n".repeat(100 + i) } }).end()
    }
    ended.push(...one.spans(), ...two.spans())
    return ended
  }
  /** Each span's name in the order `EncodedSpans` keeps them: by resource, then tracer, then as added. */
  const grouped = (spans: ReadonlyArray<ReadableSpan>): Array<ReadableSpan> => {
    const byResource = new Map<unknown, Map<unknown, Array<ReadableSpan>>>()
    for (const s of spans) {
      const scopes = byResource.get(s.resource) ?? new Map<unknown, Array<ReadableSpan>>()
      byResource.set(s.resource, scopes)
      scopes.set(s.instrumentationScope, [...(scopes.get(s.instrumentationScope) ?? []), s])
    }
    return [...byResource.values()].flatMap((scopes) => [...scopes.values()].flat())
  }

  it("writes the exporter's bytes for spans added one at a time", () => {
    const spans = mixedSpans(30)
    const batch = new EncodedSpans()
    for (const s of spans) batch.add(s)
    expect(batch.count).toBe(30)
    expect(Buffer.from(batch.requestBytes())).toEqual(official(spans))
  })

  it("splits into parts of about equal counts, each the exporter's bytes for its spans, together every span once", () => {
    const spans = mixedSpans(31)
    const parts = EncodedSpans.of(spans).split(4)
    expect(parts.map((part) => part.count)).toEqual([8, 8, 8, 7])
    const order = grouped(spans)
    let at = 0
    for (const part of parts) {
      const mine = order.slice(at, at + part.count)
      at += part.count
      expect(Buffer.from(part.requestBytes())).toEqual(official(mine))
    }
    expect(at).toBe(31)
  })

  it("reuses the buffers of a released batch without leaving its bytes in the next", () => {
    const first = EncodedSpans.of(mixedSpans(500))
    const before = first.requestBytes().length
    first.release()
    expect(first.count).toBe(500)
    const spans = mixedSpans(3)
    const next = EncodedSpans.of(spans)
    expect(next.requestBytes().length).toBeLessThan(before)
    expect(Buffer.from(next.requestBytes())).toEqual(official(spans))
  })

  it("leaves the batch as it was when a span cannot be encoded", () => {
    const [good, bad, last] = mixedSpans(3)
    if (good === undefined || bad === undefined || last === undefined) throw new Error("three spans expected")
    // Its ids, name and times are written before its attributes throw.
    const broken = Object.create(bad, {
      attributes: {
        get: () => {
          throw new Error("unreadable attributes")
        }
      }
    }) as ReadableSpan
    const batch = new EncodedSpans()
    batch.add(good)
    expect(() => batch.add(broken)).toThrow("unreadable attributes")
    batch.add(last)
    expect(batch.count).toBe(2)
    expect(Buffer.from(batch.requestBytes())).toEqual(official([good, last]))
  })
})
