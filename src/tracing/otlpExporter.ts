/**
 * The OTLP gRPC span exporter: the exporter package's own transport and configuration (endpoint,
 * credentials, headers, compression and the `OTEL_EXPORTER_OTLP_*` environment, read exactly as
 * its `OTLPTraceExporter` reads them) with codeq's request encoder in place of its serializer —
 * the same bytes at less than half the CPU (src/tracing/otlpEncode.ts).
 *
 * A request stays within the message size a gRPC server takes by default (4 MiB: the
 * OpenTelemetry Collector's and Jaeger's OTLP receivers, grpc-js): a batch whose request would be
 * larger is sent in parts, one after another. WHY: a server refuses a larger request whole, and
 * with batches of 4,096 spans (setup.ts) spans of more than ~1 KiB on average — an application's
 * own spans with long attributes — lost every span of every batch.
 */
import { ExportResultCode, type ExportResult } from "@opentelemetry/core"
import type { IOtlpExportDelegate } from "@opentelemetry/otlp-exporter-base"
import { convertLegacyOtlpGrpcOptions, createOtlpGrpcExportDelegate, type OTLPGRPCExporterConfigNode } from "@opentelemetry/otlp-grpc-exporter-base"
import { ProtobufTraceSerializer, type IExporterMetricsHelper, type IExportTraceServiceResponse, type ISerializer } from "@opentelemetry/otlp-transformer"
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base"
import { PartlyExported, spansFailed, toError, type BatchingExporter } from "./export.js"
import { EncodedSpans } from "./otlpEncode.js"

/** The largest request sent: gRPC's default limit on a received message. */
export const MAX_REQUEST_BYTES = 4 * 2 ** 20

/** The exporter's self-observability component type (semantic conventions `otel.component.type`). */
const COMPONENT_TYPE = "otlp_grpc_span_exporter"

/** What the exporter's self-observability metrics count in a batch (the package's `TraceExporterMetricsHelper`, for encoded batches). */
const SPAN_METRICS: IExporterMetricsHelper<EncodedSpans> = { name: "span", countItems: (batch) => batch.count }

/**
 * What the serializer gives the transport for a request: its ArrayBuffer when the request is all of
 * it, as `requestBytes` makes it. WHY: the package's gRPC transport makes its Buffer with
 * `Buffer.from(request)`, which copies an array (~1.6 MB for a batch of 4,096 of codeq's spans) but
 * shares an ArrayBuffer's memory. Nothing writes a request's buffer after it is built, so sharing
 * it is safe, the transport's retries included. The serializer's type says Uint8Array; the
 * transport takes either (test/otlp-export.int.test.ts sends through it).
 */
const handedOn = (bytes: Uint8Array): Uint8Array =>
  bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? (bytes.buffer as unknown as Uint8Array) : bytes

/**
 * Takes batches it makes itself (`newBatch`: spans encoded as they end, which the span batcher
 * uses) and, as any span exporter, arrays of spans (replay's `SpanShipper`).
 */
export class OtlpGrpcSpanExporter implements SpanExporter, BatchingExporter<EncodedSpans> {
  private readonly delegate: IOtlpExportDelegate<EncodedSpans>
  /** The request `exportBatch` built, handed to the delegate's serializer (which runs within `export`). */
  private readonly measured: { bytes: Uint8Array | undefined }

  constructor(
    config: OTLPGRPCExporterConfigNode,
    private readonly maxRequestBytes = MAX_REQUEST_BYTES
  ) {
    const measured: { bytes: Uint8Array | undefined } = { bytes: undefined }
    const serializer: ISerializer<EncodedSpans, IExportTraceServiceResponse> = {
      serializeRequest: (batch) => {
        const bytes = measured.bytes ?? batch.requestBytes()
        measured.bytes = undefined
        return handedOn(bytes)
      },
      deserializeResponse: (data) => ProtobufTraceSerializer.deserializeResponse(data)
    }
    this.delegate = createOtlpGrpcExportDelegate(
      // Marked deprecated upstream, yet what OTLPTraceExporter itself calls: it merges the OTEL_* environment in.
      convertLegacyOtlpGrpcOptions(config, "TRACES"),
      serializer,
      COMPONENT_TYPE,
      SPAN_METRICS,
      undefined,
      "TraceExportService",
      "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    )
    this.measured = measured
  }

  newBatch(): EncodedSpans {
    return new EncodedSpans()
  }

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    let batch: EncodedSpans
    try {
      batch = EncodedSpans.of(spans)
    } catch (cause) {
      resultCallback({ code: ExportResultCode.FAILED, error: toError(cause) })
      return
    }
    this.exportBatch(batch, resultCallback)
  }

  exportBatch(batch: EncodedSpans, resultCallback: (result: ExportResult) => void): void {
    const size = batch.requestSize()
    if (size <= this.maxRequestBytes || batch.count <= 1) {
      this.measured.bytes = batch.requestBytes()
      try {
        this.delegate.export(batch, resultCallback)
      } finally {
        // Left there only when the delegate answered without serializing (too many exports in flight).
        this.measured.bytes = undefined
        batch.release()
      }
      return
    }
    const parts = batch.split(Math.min(batch.count, Math.ceil(size / this.maxRequestBytes)))
    batch.release()
    this.exportParts(parts, resultCallback)
  }

  forceFlush(): Promise<void> {
    return this.delegate.forceFlush()
  }

  shutdown(): Promise<void> {
    return this.delegate.shutdown()
  }

  /** Each part in turn (a part still too large is split again); one answer for all of them. */
  private exportParts(parts: ReadonlyArray<EncodedSpans>, resultCallback: (result: ExportResult) => void): void {
    let failedSpans = 0
    let firstError: Error | undefined
    let next = 0
    const sendNext = (): void => {
      const part = parts[next++]
      if (part === undefined) {
        resultCallback(firstError === undefined ? { code: ExportResultCode.SUCCESS } : { code: ExportResultCode.FAILED, error: new PartlyExported(failedSpans, firstError) })
        return
      }
      this.exportBatch(part, (result) => {
        if (result.code !== ExportResultCode.SUCCESS) {
          failedSpans += spansFailed(result.error, part.count)
          firstError ??= result.error instanceof PartlyExported ? result.error.cause : (result.error ?? new Error("span export failed"))
        }
        sendNext()
      })
    }
    sendNext()
  }
}
