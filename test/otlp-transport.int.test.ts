/**
 * The exporter's plaintext gRPC calls (src/tracing/grpcTransport.ts) against a real grpc-js
 * receiver: what arrives, the metadata, the request buffer written again from one call to the
 * next, and every way a call can end — a gRPC status, no answer by the deadline, no collector, a
 * collector back on its port.
 */
import http2 from "node:http2"
import type { AddressInfo } from "node:net"
import { Metadata } from "@grpc/grpc-js"
import { ExportResultCode, type ExportResult } from "@opentelemetry/core"
import { CompressionAlgorithm } from "@opentelemetry/otlp-exporter-base"
import { resourceFromAttributes } from "@opentelemetry/resources"
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace-base"
import { afterEach, describe, expect, it } from "vitest"
import { GrpcCallError } from "../src/tracing/grpcTransport.js"
import { OtlpGrpcSpanExporter } from "../src/tracing/otlpExporter.js"
import { closedPort, startOtlpReceiver, type OtlpReceiver } from "./support/otlpReceiver.js"

/** `count` ended spans named `<prefix>-<i>`, each with an attribute of `padding` characters. */
const spans = (prefix: string, count: number, padding = 50): Array<ReadableSpan> => {
  const memory = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ resource: resourceFromAttributes({ "service.name": "transport-test" }), spanProcessors: [new SimpleSpanProcessor(memory)] })
  const tracer = provider.getTracer("codeq.test")
  for (let i = 0; i < count; i++) tracer.startSpan(`${prefix}-${i}`, { attributes: { note: "n".repeat(padding) } }).end()
  return memory.getFinishedSpans()
}

/** Exports `batch` as the span batcher does: encoded into a batch of the exporter's. */
const send = (exporter: OtlpGrpcSpanExporter, batch: ReadonlyArray<ReadableSpan>): Promise<ExportResult> =>
  new Promise((resolve) => {
    const encoded = exporter.newBatch()
    for (const span of batch) encoded.add(span)
    exporter.exportBatch(encoded, resolve)
  })

const receivers: Array<OtlpReceiver> = []
const rawServers: Array<http2.Http2Server> = []

/**
 * Not a collector: a loopback HTTP/2 server answering every call with `answer`, once the request
 * is read. Resolves with its port.
 */
const rawServer = async (answer: (stream: http2.ServerHttp2Stream) => void): Promise<number> => {
  const server = http2.createServer()
  server.on("stream", (stream) => {
    stream.on("error", () => undefined)
    stream.on("data", () => undefined)
    stream.on("end", () => answer(stream))
  })
  rawServers.push(server)
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return (server.address() as AddressInfo).port
}
const exporters: Array<OtlpGrpcSpanExporter> = []

const receiver = async (port?: number): Promise<OtlpReceiver> => {
  const started = await startOtlpReceiver(port === undefined ? {} : { port })
  receivers.push(started)
  return started
}

const exporterTo = (endpoint: string, options: { readonly timeoutMillis?: number; readonly metadata?: Metadata; readonly compression?: CompressionAlgorithm } = {}): OtlpGrpcSpanExporter => {
  const exporter = new OtlpGrpcSpanExporter({ url: `http://${endpoint}`, ...options })
  exporters.push(exporter)
  return exporter
}

afterEach(async () => {
  await Promise.all(exporters.splice(0).map((exporter) => exporter.shutdown()))
  await Promise.all(receivers.splice(0).map((started) => started.stop()))
  await Promise.all(rawServers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))))
})

describe("plaintext gRPC calls", () => {
  it("delivers each batch whole, the request buffer written again by smaller and larger batches", async () => {
    const collector = await receiver()
    const exporter = exporterTo(collector.endpoint)
    // A large batch leaves its buffer for the next; a smaller one is written over its start (what
    // was after it must not be sent); a larger one than the buffer takes a new one.
    const batches = [spans("first", 400, 200), spans("second", 7, 10), spans("third", 900, 300), spans("fourth", 1)]
    for (const batch of batches) expect(await send(exporter, batch)).toEqual({ code: ExportResultCode.SUCCESS })
    expect(collector.requests()).toBe(4)
    const sent = batches.flat()
    expect(collector.spans().map((span) => [span.name, span.attributes.note])).toEqual(sent.map((span) => [span.name, span.attributes.note]))
  })

  it("sends the exporter's metadata as the call's headers, as grpc-js sends it, binary values included", async () => {
    const collector = await receiver()
    const metadata = new Metadata()
    metadata.set("x-tenant", "acme")
    metadata.add("x-route", "blue")
    metadata.add("x-route", "green")
    metadata.set("x-trace-key-bin", Buffer.from([0, 1, 2, 250]))
    const sent = (headers: Readonly<Record<string, ReadonlyArray<string | Buffer>>> | undefined) => ({
      tenant: headers?.["x-tenant"],
      route: headers?.["x-route"],
      key: headers?.["x-trace-key-bin"]
    })
    expect(await send(exporterTo(collector.endpoint, { metadata }), spans("plain", 2))).toEqual({ code: ExportResultCode.SUCCESS })
    const plain = collector.lastMetadata()
    expect(String(plain?.["user-agent"])).toContain("codeq-otlp-grpc")
    expect(sent(plain)).toMatchObject({ tenant: ["acme"], key: [Buffer.from([0, 1, 2, 250])] })
    // The same metadata through grpc-js (a compressed export takes it) arrives the same.
    expect(await send(exporterTo(collector.endpoint, { metadata, compression: CompressionAlgorithm.GZIP }), spans("gzip", 2))).toEqual({ code: ExportResultCode.SUCCESS })
    expect(sent(plain)).toEqual(sent(collector.lastMetadata()))
  })

  it("fails the export with the collector's gRPC status, and delivers on the same connection once it accepts", async () => {
    const collector = await receiver()
    const exporter = exporterTo(collector.endpoint)
    collector.setBehaviour("unavailable")
    const refused = await send(exporter, spans("refused", 3))
    expect(refused.code).toBe(ExportResultCode.FAILED)
    expect(refused.error).toBeInstanceOf(GrpcCallError)
    expect(refused.error).toMatchObject({ code: 14, details: "receiver unavailable" })
    collector.setBehaviour("accept")
    expect(await send(exporter, spans("accepted", 3))).toEqual({ code: ExportResultCode.SUCCESS })
    expect(collector.spans().map((span) => span.name)).toEqual(["accepted-0", "accepted-1", "accepted-2"])
  })

  it("fails a call unanswered by its deadline as DEADLINE_EXCEEDED, and the next call is answered", async () => {
    const collector = await receiver()
    const exporter = exporterTo(collector.endpoint, { timeoutMillis: 300 })
    collector.setBehaviour("hang")
    const unanswered = await send(exporter, spans("hung", 2))
    expect(unanswered.code).toBe(ExportResultCode.FAILED)
    expect(unanswered.error).toMatchObject({ code: 4 })
    collector.setBehaviour("accept")
    expect(await send(exporter, spans("after", 2))).toEqual({ code: ExportResultCode.SUCCESS })
    expect(collector.spans().map((span) => span.name)).toEqual(["after-0", "after-1"])
  })

  it("fails while no collector listens, and connects again when one is back on the port", async () => {
    const first = await receiver()
    const exporter = exporterTo(first.endpoint)
    expect(await send(exporter, spans("before", 1))).toEqual({ code: ExportResultCode.SUCCESS })
    await first.stop()
    const down = await send(exporter, spans("down", 1))
    expect(down.code).toBe(ExportResultCode.FAILED)
    expect(down.error).toBeInstanceOf(Error)
    const back = await receiver(first.port)
    expect(await send(exporter, spans("back", 2))).toEqual({ code: ExportResultCode.SUCCESS })
    expect(back.spans().map((span) => span.name)).toEqual(["back-0", "back-1"])
  })

  it("leaves a compressed export to grpc-js, which gets the request's buffer as it is, and delivers it whole", async () => {
    const collector = await receiver()
    const exporter = exporterTo(collector.endpoint, { compression: CompressionAlgorithm.GZIP })
    const batches = [spans("gzip", 300, 200), spans("again", 5)]
    for (const batch of batches) expect(await send(exporter, batch)).toEqual({ code: ExportResultCode.SUCCESS })
    expect(collector.spans().map((span) => [span.name, span.attributes.note])).toEqual(batches.flat().map((span) => [span.name, span.attributes.note]))
  })

  it("runs many calls at once on one connection, and fails each of them when there is no collector, without piling up listeners", async () => {
    const warnings: Array<Error> = []
    const onWarning = (warning: Error) => warnings.push(warning)
    process.on("warning", onWarning)
    try {
      const collector = await receiver()
      const exporter = exporterTo(collector.endpoint)
      const batches = Array.from({ length: 24 }, (_, i) => spans(`call${i}`, 3))
      const results = await Promise.all(batches.map((batch) => send(exporter, batch)))
      expect(results.every((result) => result.code === ExportResultCode.SUCCESS)).toBe(true)
      expect(collector.spans().map((span) => span.name).sort()).toEqual(batches.flat().map((span) => span.name).sort())

      const nowhere = exporterTo(`127.0.0.1:${await closedPort()}`)
      const refused = await Promise.all(batches.map((batch) => send(nowhere, batch)))
      expect(refused.map((result) => result.code)).toEqual(batches.map(() => ExportResultCode.FAILED))
      // Warnings are emitted on a later tick.
      await new Promise((resolve) => setImmediate(resolve))
      expect(warnings.map((warning) => warning.name)).not.toContain("MaxListenersExceededWarning")
    } finally {
      process.off("warning", onWarning)
    }
  })

  it("fails a call whose answer passes 4 MiB instead of reading it whole", async () => {
    let sent = false
    const port = await rawServer((stream) => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true })
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }))
      sent = true
      stream.end(Buffer.alloc(5 * 2 ** 20))
    })
    const result = await send(exporterTo(`127.0.0.1:${port}`), spans("big-answer", 1))
    expect(sent).toBe(true)
    expect(result.code).toBe(ExportResultCode.FAILED)
    expect(String(result.error?.message)).toContain("answer passed")
  })

  it("keeps at most 1,000 characters of a collector's grpc-message, decoded", async () => {
    const port = await rawServer((stream) => {
      // A trailers-only answer: the status in the headers, the stream ended with them.
      stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": "13", "grpc-message": `bad%20thing ${"x".repeat(5_000)}` }, { endStream: true })
    })
    const result = await send(exporterTo(`127.0.0.1:${port}`), spans("long-message", 1))
    expect(result.error).toBeInstanceOf(GrpcCallError)
    const error = result.error as GrpcCallError
    expect(error.code).toBe(13)
    expect(error.details.startsWith("bad thing xxx")).toBe(true)
    expect(error.details.length).toBe(1_001)
  })
})
