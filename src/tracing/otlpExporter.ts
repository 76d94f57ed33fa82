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
import { OTLPExporterBase } from "@opentelemetry/otlp-exporter-base"
import { convertLegacyOtlpGrpcOptions, createOtlpGrpcExportDelegate, type OTLPGRPCExporterConfigNode } from "@opentelemetry/otlp-grpc-exporter-base"
import { ProtobufTraceSerializer, TraceExporterMetricsHelper, type IExportTraceServiceResponse, type ISerializer } from "@opentelemetry/otlp-transformer"
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base"
import { PartlyExported } from "./export.js"
import { encodeTraceExportRequest } from "./otlpEncode.js"

/** The largest request sent: gRPC's default limit on a received message. */
export const MAX_REQUEST_BYTES = 4 * 2 ** 20

/** The exporter's self-observability component type (semantic conventions `otel.component.type`). */
const COMPONENT_TYPE = "otlp_grpc_span_exporter"

export class OtlpGrpcSpanExporter extends OTLPExporterBase<ReadableSpan[]> implements SpanExporter {
  /** The request `export` encoded to measure it, handed to the delegate's serializer (which runs within `export`). */
  private readonly measured: { bytes: Uint8Array | undefined }

  constructor(
    config: OTLPGRPCExporterConfigNode,
    private readonly maxRequestBytes = MAX_REQUEST_BYTES
  ) {
    const measured: { bytes: Uint8Array | undefined } = { bytes: undefined }
    const serializer: ISerializer<ReadableSpan[], IExportTraceServiceResponse> = {
      serializeRequest: (spans) => {
        const bytes = measured.bytes
        measured.bytes = undefined
        return bytes ?? encodeTraceExportRequest(spans)
      },
      deserializeResponse: (data) => ProtobufTraceSerializer.deserializeResponse(data)
    }
    super(
      createOtlpGrpcExportDelegate(
        // Marked deprecated upstream, yet what OTLPTraceExporter itself calls: it merges the OTEL_* environment in.
        convertLegacyOtlpGrpcOptions(config, "TRACES"),
        serializer,
        COMPONENT_TYPE,
        TraceExporterMetricsHelper,
        undefined,
        "TraceExportService",
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
      )
    )
    this.measured = measured
  }

  override export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    const bytes = encodeTraceExportRequest(spans)
    if (bytes.length <= this.maxRequestBytes || spans.length <= 1) {
      this.measured.bytes = bytes
      try {
        super.export(spans, resultCallback)
      } finally {
        // Left there only when the delegate answered without serializing (too many exports in flight).
        this.measured.bytes = undefined
      }
      return
    }
    const count = Math.min(spans.length, Math.ceil(bytes.length / this.maxRequestBytes))
    const size = Math.ceil(spans.length / count)
    const parts: Array<ReadableSpan[]> = []
    for (let at = 0; at < spans.length; at += size) parts.push(spans.slice(at, at + size))
    this.exportParts(parts, resultCallback)
  }

  /** Each part in turn (a part still too large is split again); one answer for all of them. */
  private exportParts(parts: ReadonlyArray<ReadableSpan[]>, resultCallback: (result: ExportResult) => void): void {
    let failedSpans = 0
    let firstError: Error | undefined
    let next = 0
    const sendNext = (): void => {
      const part = parts[next++]
      if (part === undefined) {
        resultCallback(firstError === undefined ? { code: ExportResultCode.SUCCESS } : { code: ExportResultCode.FAILED, error: new PartlyExported(failedSpans, firstError) })
        return
      }
      this.export(part, (result) => {
        if (result.code !== ExportResultCode.SUCCESS) {
          failedSpans += result.error instanceof PartlyExported ? result.error.failedSpans : part.length
          firstError ??= result.error instanceof PartlyExported ? result.error.cause : (result.error ?? new Error("span export failed"))
        }
        sendNext()
      })
    }
    sendNext()
  }
}
