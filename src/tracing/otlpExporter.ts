/**
 * The OTLP gRPC span exporter: the exporter package's own transport and configuration (endpoint,
 * credentials, headers, compression and the `OTEL_EXPORTER_OTLP_*` environment, read exactly as
 * its `OTLPTraceExporter` reads them) with codeq's request encoder in place of its serializer —
 * the same bytes at less than half the CPU (src/tracing/otlpEncode.ts).
 */
import { OTLPExporterBase } from "@opentelemetry/otlp-exporter-base"
import { convertLegacyOtlpGrpcOptions, createOtlpGrpcExportDelegate, type OTLPGRPCExporterConfigNode } from "@opentelemetry/otlp-grpc-exporter-base"
import { ProtobufTraceSerializer, TraceExporterMetricsHelper, type IExportTraceServiceResponse, type ISerializer } from "@opentelemetry/otlp-transformer"
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base"
import { encodeTraceExportRequest } from "./otlpEncode.js"

const SERIALIZER: ISerializer<ReadableSpan[], IExportTraceServiceResponse> = {
  serializeRequest: encodeTraceExportRequest,
  deserializeResponse: (data) => ProtobufTraceSerializer.deserializeResponse(data)
}

/** The exporter's self-observability component type (semantic conventions `otel.component.type`). */
const COMPONENT_TYPE = "otlp_grpc_span_exporter"

export class OtlpGrpcSpanExporter extends OTLPExporterBase<ReadableSpan[]> implements SpanExporter {
  constructor(config: OTLPGRPCExporterConfigNode) {
    super(
      createOtlpGrpcExportDelegate(
        // Marked deprecated upstream, yet what OTLPTraceExporter itself calls: it merges the OTEL_* environment in.
        convertLegacyOtlpGrpcOptions(config, "TRACES"),
        SERIALIZER,
        COMPONENT_TYPE,
        TraceExporterMetricsHelper,
        undefined,
        "TraceExportService",
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
      )
    )
  }
}
