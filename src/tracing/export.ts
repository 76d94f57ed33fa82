/**
 * Fail-open span export (DESIGN §6). The broker's availability comes before the completeness of
 * its traces: when the collector is unreachable or refuses the TLS handshake, spans are dropped
 * and counted, one warning says so for the whole outage, and nothing waits on the collector.
 */
import { ExportResultCode, type ExportResult } from "@opentelemetry/core"
import type { Resource } from "@opentelemetry/resources"
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base"

/** Where tracing reports on itself; a pino logger fits. Calls never throw into the caller. */
export interface TracingLogger {
  warn(fields: Record<string, unknown>, message: string): void
  info(fields: Record<string, unknown>, message: string): void
}

/** Export outcomes since the exporter was created, for `codeq_trace_export_failures_total` and kin. */
export interface ExportCounters {
  /** Export calls (batches) that failed. */
  readonly exportFailures: number
  /** Sampled spans that never reached the collector: in those failed calls, and (counted by the
   * span queue) dropped because the queue was full. */
  readonly droppedSpans: number
  /** Spans the collector accepted. */
  readonly exportedSpans: number
}

/** Logs without ever throwing: a broken log sink must not break span export, or the broker. */
export const safeLog = (logger: TracingLogger, level: "warn" | "info", fields: Record<string, unknown>, message: string): void => {
  try {
    logger[level](fields, message)
  } catch {
    // Observer code never throws into the main path.
  }
}

/** Anything thrown, as an Error. */
export const toError = (cause: unknown): Error => (cause instanceof Error ? cause : new Error(String(cause)))

/** The parts of a thrown or reported error that are safe to log: its message and gRPC code. */
export const describeError = (error: unknown): Record<string, unknown> => {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code
    return typeof code === "number" || typeof code === "string" ? { error: error.message, code } : { error: error.message }
  }
  return { error: String(error) }
}

/** The spans of one export, collected as they end (batch.ts). */
export interface SpanBatch {
  /** How many spans it holds. */
  readonly count: number
  /** Adds an ended span; may throw (a span that cannot be encoded), leaving the batch as it was. */
  add(span: ReadableSpan): void
  /** The resources of its spans: an export waits for their asynchronous attributes. */
  resources(): ReadonlyArray<Resource>
}

/**
 * An exporter that makes its own batches, so that it can keep a span in the form it sends
 * (the OTLP exporter encodes each span as it ends: otlpEncode.ts).
 */
export interface BatchingExporter<B extends SpanBatch> {
  newBatch(): B
  exportBatch(batch: B, resultCallback: (result: ExportResult) => void): void
  shutdown(): Promise<void>
  forceFlush?(): Promise<void>
}

/** Spans kept as objects, for an exporter that takes them so. */
export class SpanList implements SpanBatch {
  readonly spans: Array<ReadableSpan> = []

  get count(): number {
    return this.spans.length
  }

  add(span: ReadableSpan): void {
    this.spans.push(span)
  }

  resources(): ReadonlyArray<Resource> {
    return [...new Set(this.spans.map((span) => span.resource))]
  }
}

const isBatchingExporter = (exporter: SpanExporter | BatchingExporter<SpanBatch>): exporter is BatchingExporter<SpanBatch> =>
  typeof (exporter as Partial<BatchingExporter<SpanBatch>>).exportBatch === "function" && typeof (exporter as Partial<BatchingExporter<SpanBatch>>).newBatch === "function"

/** The exporter itself when it makes its own batches; otherwise it is given lists of span objects. */
export const batchingOf = (exporter: SpanExporter | BatchingExporter<SpanBatch>): BatchingExporter<SpanBatch> => {
  if (isBatchingExporter(exporter)) return exporter
  return {
    newBatch: () => new SpanList(),
    exportBatch: (batch, resultCallback) => exporter.export((batch as SpanList).spans, resultCallback),
    shutdown: () => exporter.shutdown(),
    forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve()
  }
}

/**
 * An export sent in parts (otlpExporter.ts) of which some failed: how many spans those held, and
 * the first part's error. Its message and code are that error's, so an outage logs the same.
 */
export class PartlyExported extends Error {
  override readonly cause: Error
  readonly code: unknown

  constructor(
    readonly failedSpans: number,
    cause: Error
  ) {
    super(cause.message)
    this.name = "PartlyExported"
    this.cause = cause
    this.code = (cause as { code?: unknown }).code
  }
}

/** How many of an export's `count` spans a failed result lost: all of them, or those of the parts that failed. */
export const spansFailed = (error: unknown, count: number): number => (error instanceof PartlyExported ? Math.min(count, error.failedSpans) : count)

/**
 * Wraps the real exporter: counts what fails, warns once when export starts failing and logs
 * once more (info) when it recovers, so an outage is two lines however many batches it drops.
 */
export class FailOpenExporter<B extends SpanBatch> implements BatchingExporter<B> {
  private failures = 0
  private dropped = 0
  private exported = 0
  private failing = false

  constructor(
    private readonly inner: BatchingExporter<B>,
    private readonly logger: TracingLogger,
    private readonly endpoint: string
  ) {}

  counters(): ExportCounters {
    return { exportFailures: this.failures, droppedSpans: this.dropped, exportedSpans: this.exported }
  }

  newBatch(): B {
    return this.inner.newBatch()
  }

  exportBatch(batch: B, resultCallback: (result: ExportResult) => void): void {
    let settled = false
    const settle = (result: ExportResult): void => {
      if (settled) return
      settled = true
      this.record(batch.count, result)
      resultCallback(result)
    }
    try {
      this.inner.exportBatch(batch, settle)
    } catch (cause) {
      settle({ code: ExportResultCode.FAILED, error: toError(cause) })
    }
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown()
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve()
  }

  /** Export cannot work from the start (the exporter could not be built): the outage's one warning. */
  failFromStart(error: unknown): void {
    this.failing = true
    safeLog(
      this.logger,
      "warn",
      { endpoint: this.endpoint, ...describeError(error) },
      "span exporter could not be created: spans are dropped and counted; the broker keeps serving"
    )
  }

  private record(count: number, result: ExportResult): void {
    if (result.code === ExportResultCode.SUCCESS) {
      this.exported += count
      if (this.failing) {
        this.failing = false
        safeLog(this.logger, "info", { endpoint: this.endpoint, exportFailures: this.failures, droppedSpans: this.dropped }, "span export recovered")
      }
      return
    }
    this.failures++
    // An export sent in parts may have delivered some of them.
    const dropped = spansFailed(result.error, count)
    this.dropped += dropped
    this.exported += count - dropped
    if (!this.failing) {
      this.failing = true
      safeLog(
        this.logger,
        "warn",
        { endpoint: this.endpoint, ...describeError(result.error) },
        "span export failing: spans are dropped and counted until the collector is reachable; the broker keeps serving"
      )
    }
  }
}

/** A stand-in used when the real exporter cannot even be built: every span is dropped and counted. */
export class DroppingExporter implements SpanExporter {
  constructor(private readonly cause: Error) {}

  export(_spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    resultCallback({ code: ExportResultCode.FAILED, error: this.cause })
  }

  shutdown(): Promise<void> {
    return Promise.resolve()
  }
}
