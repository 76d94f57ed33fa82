/**
 * Tracing at process boot (DESIGN §6): the propagator and context manager always, and when
 * tracing is enabled an SDK provider sampling with ParentBased(TraceIdRatioBased(ratio)) that
 * batches spans to a collector over OTLP gRPC.
 *
 * Tracing fails open. An exporter that cannot be built, a collector that is down, a TLS handshake
 * that fails: each costs one warning and dropped (counted) spans, never a refused start or a
 * slower broker. `shutdown` flushes what is queued within a deadline and never throws.
 */
import { trace, type TracerProvider } from "@opentelemetry/api"
import { credentials } from "@grpc/grpc-js"
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from "@opentelemetry/resources"
import {
  BasicTracerProvider,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  type BufferConfig,
  type SpanExporter
} from "@opentelemetry/sdk-trace-base"
import { ATTR_SERVICE_NAME } from "@opentelemetry/semantic-conventions"
import { log } from "../log/log.js"
import { resolveTracingConfig, type TracingConfig, type TracingConfigInput, type TracingEnv } from "./config.js"
import { DroppingExporter, FailOpenExporter, batchingOf, safeLog, toError, type ExportCounters, type SpanBatch, type TracingLogger } from "./export.js"
import { SpanBatcher } from "./batch.js"
import { OtlpGrpcSpanExporter } from "./otlpExporter.js"
import { contextManagerIsCodeqs, installPropagation } from "./propagation.js"
import { registerSpanSink } from "./transitionSpan.js"
import { resolveProvider } from "./spans.js"

/** How long `shutdown` may take by default: the SIGTERM budget for spans (DESIGN §6). */
export const SHUTDOWN_DEADLINE_MS = 5_000

/** How long one export call may wait for the collector. */
export const EXPORT_TIMEOUT_MS = 10_000

/**
 * The span batch: the SDK's default queue (2,048 spans) overflows within a quarter of a second
 * at a few thousand tasks a second (four spans a task) and silently drops the rest. A queue of
 * 64k spans, exported in batches of 4,096 every second, keeps up; memory is bounded by the queue.
 */
export const SPAN_BATCH: BufferConfig = { maxQueueSize: 65_536, maxExportBatchSize: 4_096, scheduledDelayMillis: 1_000 }

export interface SetupTracingOptions {
  /** Environment the `OTEL_*` overrides are read from. Default `process.env`. */
  readonly env?: TracingEnv
  /** Where tracing reports on itself. Default the process logger, component `tracing`. */
  readonly logger?: TracingLogger
  /** Batch span processor tuning. Default `SPAN_BATCH`: 65,536 queued, 4,096 per export, at least every second. */
  readonly batch?: BufferConfig
  /** Deadline of one export call. Default 10 s. */
  readonly exportTimeoutMs?: number
  /** Builds the span exporter. Default OTLP over gRPC to the configured endpoint. */
  readonly createExporter?: (config: TracingConfig, exportTimeoutMs: number) => SpanExporter
}

/** How a flush ended: everything exported, the deadline passed first, or the export failed. */
export type FlushOutcome = "flushed" | "timed_out" | "failed"

/** Tracing as set up for this process. */
export interface TracingHandle {
  readonly config: TracingConfig
  /** Where spans come from: the registered SDK provider, or the id-only one when disabled. */
  readonly provider: TracerProvider
  /** Whether spans are sent to a collector. */
  readonly exporting: boolean
  /** Failed export calls so far: the value of `codeq_trace_export_failures_total`. */
  exportFailures(): number
  /** All export counters so far. */
  counters(): ExportCounters
  /** Exports every queued span now; resolves by the deadline whatever happens. Never throws. */
  flush(deadlineMs?: number): Promise<FlushOutcome>
  /** Flushes queued spans and stops exporting; resolves by the deadline. Never throws; idempotent. */
  shutdown(deadlineMs?: number): Promise<FlushOutcome>
}

const NO_COUNTERS: ExportCounters = { exportFailures: 0, droppedSpans: 0, exportedSpans: 0 }

/** Runs `work` against a deadline; the timer never keeps the process alive. */
const withDeadline = async (work: () => Promise<unknown>, deadlineMs: number): Promise<FlushOutcome> => {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<FlushOutcome>((resolve) => {
    timer = setTimeout(() => resolve("timed_out"), Math.max(0, deadlineMs))
    timer.unref()
  })
  const done = Promise.resolve()
    .then(work)
    .then(
      (): FlushOutcome => "flushed",
      (): FlushOutcome => "failed"
    )
  try {
    return await Promise.race([done, deadline])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * The OTLP gRPC exporter. Plaintext when `insecure`; otherwise TLS with the standard
 * `OTEL_EXPORTER_OTLP_CERTIFICATE` / `_CLIENT_KEY` / `_CLIENT_CERTIFICATE` files if set.
 */
export const otlpGrpcExporter = (config: TracingConfig, exportTimeoutMs: number): SpanExporter =>
  new OtlpGrpcSpanExporter({
    url: config.endpoint,
    timeoutMillis: exportTimeoutMs,
    ...(config.insecure ? { credentials: credentials.createInsecure() } : {})
  })

const disabledHandle = (config: TracingConfig): TracingHandle => ({
  config,
  // Whatever is registered globally (an embedding application's provider), else id-only spans.
  provider: resolveProvider(),
  exporting: false,
  exportFailures: () => 0,
  counters: () => NO_COUNTERS,
  flush: () => Promise.resolve("flushed"),
  shutdown: () => Promise.resolve("flushed")
})

/**
 * Sets tracing up for this process from the five config keys and the `OTEL_*` environment.
 * Installs codeq's propagator (W3C + baggage, B3 accepted, B3 emitted on request) and the
 * AsyncLocalStorage context manager even when tracing is disabled; when enabled, registers the
 * exporting provider as the global one, replacing any earlier.
 *
 * @throws TracingConfigError when a setting is unusable (a ratio outside 0..1, a bad endpoint).
 */
export const setupTracing = (input: TracingConfigInput = {}, options: SetupTracingOptions = {}): TracingHandle => {
  const config = resolveTracingConfig(input, options.env ?? process.env)
  const logger = options.logger ?? log.child({ component: "tracing" })
  installPropagation(config.b3)
  if (config.unknownPropagators.length > 0) {
    safeLog(logger, "warn", { ignored: config.unknownPropagators }, "OTEL_PROPAGATORS names propagators codeq does not implement; they are ignored")
  }
  if (!config.enabled) return disabledHandle(config)

  const exportTimeoutMs = options.exportTimeoutMs ?? EXPORT_TIMEOUT_MS
  let exporter: FailOpenExporter<SpanBatch>
  try {
    exporter = new FailOpenExporter(batchingOf((options.createExporter ?? otlpGrpcExporter)(config, exportTimeoutMs)), logger, config.endpoint)
  } catch (cause) {
    // Fail open: no exporter means spans are dropped and counted, not that the broker stops.
    const error = toError(cause)
    exporter = new FailOpenExporter(batchingOf(new DroppingExporter(error)), logger, config.endpoint)
    exporter.failFromStart(error)
  }

  const resource = defaultResource()
    .merge(detectResources({ detectors: [envDetector] }))
    .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: config.serviceName }))
  const batcher = new SpanBatcher(exporter, { ...(options.batch ?? SPAN_BATCH), logger, suppressTracingOnExport: () => !contextManagerIsCodeqs() })
  const counters = (): ExportCounters => {
    const exported = exporter.counters()
    return { ...exported, droppedSpans: exported.droppedSpans + batcher.dropped() }
  }
  const sampler = new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.sampleRatio) })
  const provider = new BasicTracerProvider({ resource, sampler, spanProcessors: [batcher] })
  registerSpanSink(provider, { sampler, resource, processor: batcher, followsParent: true, samplerIgnoresAttributes: true })
  trace.disable()
  trace.setGlobalTracerProvider(provider)
  safeLog(
    logger,
    "info",
    { serviceName: config.serviceName, endpoint: config.endpoint, insecure: config.insecure, sampleRatio: config.sampleRatio },
    "tracing enabled: exporting spans over OTLP gRPC"
  )

  let shutdownOutcome: Promise<FlushOutcome> | undefined
  return {
    config,
    provider,
    exporting: true,
    exportFailures: () => exporter.counters().exportFailures,
    counters,
    flush: (deadlineMs = SHUTDOWN_DEADLINE_MS) => withDeadline(() => provider.forceFlush(), deadlineMs),
    shutdown: (deadlineMs = SHUTDOWN_DEADLINE_MS) =>
      (shutdownOutcome ??= withDeadline(() => provider.shutdown(), deadlineMs).then((outcome) => {
        safeLog(logger, "info", { outcome, ...counters() }, "tracing shut down")
        return outcome
      }))
  }
}
