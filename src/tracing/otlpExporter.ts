/**
 * The OTLP gRPC span exporter: the exporter package's own configuration (endpoint, credentials,
 * headers, compression and the `OTEL_EXPORTER_OTLP_*` environment, read exactly as its
 * `OTLPTraceExporter` reads them) with codeq's request encoder in place of its serializer — the
 * same bytes at less than half the CPU (otlpEncode.ts, otlpMessages.ts). Calls over plaintext without
 * compression go through codeq's HTTP/2 transport (grpcTransport.ts), which writes the request as
 * it is into a buffer kept from call to call; TLS and gzip through the package's grpc-js transport.
 *
 * A request stays within the message size a gRPC server takes by default (4 MiB: the
 * OpenTelemetry Collector's and Jaeger's OTLP receivers, grpc-js): a batch whose request would be
 * larger is sent in parts, one after another. WHY: a server refuses a larger request whole, and
 * with batches of 4,096 spans (setup.ts) spans of more than ~1 KiB on average — an application's
 * own spans with long attributes — lost every span of every batch.
 */
import type { OutgoingHttpHeaders } from "node:http2"
import type { Metadata } from "@grpc/grpc-js"
import { ExportResultCode, type ExportResult } from "@opentelemetry/core"
import { createOtlpNetworkExportDelegate, type IOtlpExportDelegate } from "@opentelemetry/otlp-exporter-base"
import { convertLegacyOtlpGrpcOptions, createOtlpGrpcExportDelegate, createOtlpGrpcExporterMetrics, type OTLPGRPCExporterConfigNode } from "@opentelemetry/otlp-grpc-exporter-base"
import { ProtobufTraceSerializer, type IExporterMetricsHelper, type IExportTraceServiceResponse, type ISerializer } from "@opentelemetry/otlp-transformer"
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base"
import { PartlyExported, spansFailed, toError, type BatchingExporter } from "./export.js"
import { PlaintextGrpcTransport } from "./grpcTransport.js"
import { EncodedSpans } from "./otlpEncode.js"

/** The largest request sent: gRPC's default limit on a received message. */
export const MAX_REQUEST_BYTES = 4 * 2 ** 20

/** The exporter's self-observability component type (semantic conventions `otel.component.type`). */
const COMPONENT_TYPE = "otlp_grpc_span_exporter"

/** A request buffer is made this much larger than its first request, so the next ones fit too. */
const SPARE_HEADROOM = 1.25
/** A larger one (a batch of unusually large spans) is not kept. */
const KEEP_SPARE_AT_MOST_BYTES = MAX_REQUEST_BYTES * SPARE_HEADROOM

/** The OTLP trace service's Export method. */
const EXPORT_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

/**
 * The exporter's metadata (`headers`, `OTEL_EXPORTER_OTLP_HEADERS`) as HTTP/2 headers, as grpc-js
 * sends it (repeated values and base64 `-bin` ones included), and the user agent.
 */
const grpcHeaders = (metadata: Metadata, userAgent: string | undefined): OutgoingHttpHeaders => ({
  ...metadata.toHttp2Headers(),
  "user-agent": userAgent === undefined ? USER_AGENT : `${userAgent} ${USER_AGENT}`
})
const USER_AGENT = "codeq-otlp-grpc"

/** What the exporter's self-observability metrics count in a batch (the package's `TraceExporterMetricsHelper`, for encoded batches). */
const SPAN_METRICS: IExporterMetricsHelper<EncodedSpans> = { name: "span", countItems: (batch) => batch.count }

/**
 * What the serializer gives the package's grpc-js transport for a request: its ArrayBuffer when
 * the request is all of it, as `requestBytes` makes it without a buffer to write into. WHY: that
 * transport makes its Buffer with `Buffer.from(request)`, which copies an array (~1.6 MB for a
 * batch of 4,096 of codeq's spans) but shares an ArrayBuffer's memory. Nothing writes such a
 * request's buffer after it is built, so sharing it is safe. The serializer's type says Uint8Array;
 * the transport takes either (test/otlp-transport.int.test.ts sends through it, compressed).
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
  private readonly pending: { bytes: Uint8Array | undefined }
  /** Whether calls go through codeq's plaintext transport (grpcTransport.ts) rather than grpc-js. */
  private readonly plaintext: boolean
  /**
   * The buffer of the last request a plaintext call delivered, written over by the next one. WHY:
   * a new buffer's memory is mapped as it is first written — ~3 ms for a 1.6 MB request on this
   * machine (a CPU profile of an exporter sending batches of 4,096 spans), more than the copy
   * itself. (The grpc-js transport keeps no reference either, but copies the request into a new
   * frame of its own.)
   */
  private spare: Uint8Array | undefined

  constructor(
    config: OTLPGRPCExporterConfigNode,
    private readonly maxRequestBytes = MAX_REQUEST_BYTES
  ) {
    const pending: { bytes: Uint8Array | undefined } = { bytes: undefined }
    // Marked deprecated upstream, yet what OTLPTraceExporter itself calls: it merges the OTEL_* environment in.
    const options = convertLegacyOtlpGrpcOptions(config, "TRACES")
    const plaintext = !options.credentials()._isSecure() && options.compression !== "gzip"
    const serializer: ISerializer<EncodedSpans, IExportTraceServiceResponse> = {
      // Only exportBatch calls the delegate, with the request built.
      serializeRequest: () => {
        const bytes = pending.bytes
        pending.bytes = undefined
        return bytes === undefined || plaintext ? bytes : handedOn(bytes)
      },
      deserializeResponse: (data) => ProtobufTraceSerializer.deserializeResponse(data)
    }
    this.delegate = plaintext
      ? createOtlpNetworkExportDelegate(
          options,
          serializer,
          createOtlpGrpcExporterMetrics(COMPONENT_TYPE, SPAN_METRICS, options.url, undefined),
          new PlaintextGrpcTransport(options.url, EXPORT_PATH, grpcHeaders(options.metadata(), options.userAgent))
        )
      : createOtlpGrpcExportDelegate(options, serializer, COMPONENT_TYPE, SPAN_METRICS, undefined, "TraceExportService", EXPORT_PATH)
    this.pending = pending
    this.plaintext = plaintext
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
      const into = this.plaintext ? this.takeSpare(size) : undefined
      this.pending.bytes = batch.requestBytes(into)
      try {
        this.delegate.export(
          batch,
          into === undefined
            ? resultCallback
            : (result) => {
                // Kept only after a call that succeeded: the collector read the whole request and the call is closed.
                if (result.code === ExportResultCode.SUCCESS && into.length <= KEEP_SPARE_AT_MOST_BYTES) this.spare = into
                resultCallback(result)
              }
        )
      } finally {
        // Left there only when the delegate answered without serializing (too many exports in flight).
        this.pending.bytes = undefined
        batch.release()
      }
      return
    }
    const parts = batch.split(Math.min(batch.count, Math.ceil(size / this.maxRequestBytes)))
    batch.release()
    this.exportParts(parts, resultCallback)
  }

  /** A buffer with room for `size` bytes: the spare one when it is large enough, else a new one with some to spare. */
  private takeSpare(size: number): Uint8Array {
    const spare = this.spare
    this.spare = undefined
    return spare !== undefined && spare.length >= size ? spare : Buffer.allocUnsafeSlow(Math.ceil(size * SPARE_HEADROOM))
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
