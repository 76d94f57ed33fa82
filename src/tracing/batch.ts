/**
 * Sends ended, sampled spans to the exporter in batches: a batch as soon as `maxExportBatchSize`
 * spans are queued, what is queued after `scheduledDelayMillis` otherwise, one export at a time;
 * beyond `maxQueueSize` spans are dropped and counted.
 *
 * Why not the SDK's BatchSpanProcessor: it runs every export inside `context.with(...)`, and the
 * first `context.with` on an AsyncLocalStorage context manager turns on Node's async hooks for the
 * rest of the process — a hook on every promise created from then on, whether or not it has
 * anything to do with tracing. In a worker that was about a third of what tracing cost per task
 * (CPU profiles of the bench's `tracing` variant, `E2E_CPU_PROF`; BENCHMARKS.md "Profiles"). Spans are exported here without entering a context. The SDK enters one to
 * mark the export's own calls as not to be traced, which only matters when instrumentation is
 * loaded; so a context is still entered when the context manager is not codeq's (an embedding
 * application that registered its own, with its instrumentations).
 */
import { TraceFlags, context } from "@opentelemetry/api"
import { ExportResultCode, suppressTracing, type ExportResult } from "@opentelemetry/core"
import type { BufferConfig, ReadableSpan, Span, SpanExporter, SpanProcessor } from "@opentelemetry/sdk-trace-base"
import { batchingOf, describeError, safeLog, toError, type BatchingExporter, type SpanBatch, type TracingLogger } from "./export.js"

export interface SpanBatcherOptions extends BufferConfig {
  /** Whether an export must run in a context that suppresses tracing. Default never. */
  readonly suppressTracingOnExport?: () => boolean
  readonly logger: TracingLogger
}

const DEFAULTS = { maxQueueSize: 2_048, maxExportBatchSize: 512, scheduledDelayMillis: 5_000, exportTimeoutMillis: 30_000 }

export class SpanBatcher implements SpanProcessor {
  private readonly exporter: BatchingExporter<SpanBatch>
  /** Batches that filled, oldest first, then the one filling. */
  private readonly full: Array<SpanBatch> = []
  private current: SpanBatch | undefined
  /** Spans in `full` and `current`. */
  private queued = 0
  private readonly maxQueue: number
  private readonly maxBatch: number
  private readonly delayMs: number
  private readonly exportTimeoutMs: number
  private readonly suppress: () => boolean
  private readonly logger: TracingLogger
  /** Exports run one after another on this chain; it never rejects. */
  private chain: Promise<void> = Promise.resolve()
  private draining = false
  private timer: NodeJS.Timeout | undefined
  private closing: Promise<void> | undefined
  private droppedSpans = 0
  private overflowing = false
  private unencodable = false

  /** An exporter that makes its own batches (the OTLP one: spans encoded as they end) is given those; any other, lists of spans. */
  constructor(exporter: SpanExporter | BatchingExporter<SpanBatch>, options: SpanBatcherOptions) {
    this.exporter = batchingOf(exporter)
    this.maxQueue = Math.max(1, options.maxQueueSize ?? DEFAULTS.maxQueueSize)
    this.maxBatch = Math.min(this.maxQueue, Math.max(1, options.maxExportBatchSize ?? DEFAULTS.maxExportBatchSize))
    this.delayMs = Math.max(0, options.scheduledDelayMillis ?? DEFAULTS.scheduledDelayMillis)
    this.exportTimeoutMs = Math.max(1, options.exportTimeoutMillis ?? DEFAULTS.exportTimeoutMillis)
    this.suppress = options.suppressTracingOnExport ?? (() => false)
    this.logger = options.logger
  }

  /** Spans dropped: the queue was full, or a span could not be encoded. */
  dropped(): number {
    return this.droppedSpans
  }

  onStart(_span: Span): void {}

  onEnd(span: ReadableSpan): void {
    if (this.closing !== undefined || (span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return
    if (this.queued >= this.maxQueue) {
      this.droppedSpans++
      if (!this.overflowing) {
        this.overflowing = true
        safeLog(this.logger, "warn", { maxQueueSize: this.maxQueue }, "span queue full: spans are dropped and counted until the exporter catches up")
      }
      return
    }
    this.overflowing = false
    const batch = (this.current ??= this.exporter.newBatch())
    try {
      batch.add(span)
    } catch (cause) {
      // Observer code never throws into the main path: the span is dropped and counted.
      this.droppedSpans++
      if (!this.unencodable) {
        this.unencodable = true
        safeLog(this.logger, "warn", { span: span.name, ...describeError(cause) }, "a span could not be encoded: it is dropped and counted")
      }
      return
    }
    this.queued++
    if (batch.count >= this.maxBatch) {
      this.full.push(batch)
      this.current = undefined
      this.drainFullBatches()
    } else this.arm()
  }

  /** Exports everything queued; rejects with the first failure if an export failed. Never waits on spans ended after it. */
  forceFlush(): Promise<void> {
    return this.flushAll()
  }

  /** Exports everything queued, then shuts the exporter down; later spans are ignored. */
  shutdown(): Promise<void> {
    this.closing ??= (async () => {
      clearTimeout(this.timer)
      this.timer = undefined
      try {
        await this.flushAll()
      } finally {
        await this.exporter.shutdown()
      }
    })()
    return this.closing
  }

  /** Exports the batches queued when its turn comes; spans ended meanwhile wait for the next turn. */
  private async flushAll(): Promise<void> {
    let failure: Error | undefined
    await this.enqueue(async () => {
      for (let batches = this.full.length + (this.current === undefined ? 0 : 1); batches > 0; batches--) failure ??= await this.exportOne()
    })
    if (failure !== undefined) throw failure
  }

  private enqueue(work: () => Promise<void>): Promise<void> {
    this.chain = this.chain.then(work).catch(() => undefined)
    return this.chain
  }

  /** Exports full batches until less than one is queued; then the timer takes the rest. */
  private drainFullBatches(): void {
    if (this.draining) return
    this.draining = true
    void this.enqueue(async () => {
      try {
        while (this.full.length > 0) await this.exportOne()
      } finally {
        this.draining = false
        this.arm()
      }
    })
  }

  /** Exports what is queued `scheduledDelayMillis` from now, unless a batch fills first. */
  private arm(): void {
    if (this.timer !== undefined || this.queued === 0 || this.closing !== undefined) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      void this.enqueue(async () => void (await this.exportOne())).then(() => this.arm())
    }, this.delayMs)
    this.timer.unref()
  }

  /** Exports up to one batch; resolves when the exporter answers (with its error, if it failed) or at the export deadline. */
  private async exportOne(): Promise<Error | undefined> {
    const batch = this.full.shift() ?? this.current
    if (batch === undefined) return undefined
    if (batch === this.current) this.current = undefined
    // Empty when the only span added to it could not be encoded: nothing to send.
    if (batch.count === 0) return undefined
    this.queued -= batch.count
    const pending = batch
      .resources()
      .filter((resource) => resource.asyncAttributesPending === true)
      .map((resource) => resource.waitForAsyncAttributes?.())
    if (pending.length > 0) await Promise.all(pending)
    return new Promise<Error | undefined>((resolve) => {
      // The exporter reports failures itself (FailOpenExporter counts them); this deadline only
      // keeps one that never answers from holding every later batch back.
      const deadline = setTimeout(() => resolve(new Error(`span export not answered within ${this.exportTimeoutMs} ms`)), this.exportTimeoutMs)
      deadline.unref()
      const answered = (result: ExportResult) => {
        clearTimeout(deadline)
        resolve(result.code === ExportResultCode.SUCCESS ? undefined : (result.error ?? new Error("span export failed")))
      }
      const run = () => this.exporter.exportBatch(batch, answered)
      try {
        if (this.suppress()) context.with(suppressTracing(context.active()), run)
        else run()
      } catch (cause) {
        answered({ code: ExportResultCode.FAILED, error: toError(cause) })
      }
    })
  }
}
