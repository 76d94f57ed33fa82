/**
 * The span queue between the SDK and the exporter (src/tracing/batch.ts): batches by size and by
 * delay, drops and counts beyond its bound, flushes and shuts down completely, and exports without
 * entering a context unless it must mark the export as not to be traced.
 */
import { context, type Context } from "@opentelemetry/api"
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks"
import { ExportResultCode, isTracingSuppressed, type ExportResult } from "@opentelemetry/core"
import { BasicTracerProvider, SamplingDecision, type ReadableSpan, type Sampler, type SpanExporter } from "@opentelemetry/sdk-trace-base"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { SpanBatcher, type SpanBatcherOptions } from "../src/tracing/batch.js"
import { SpanList, type BatchingExporter } from "../src/tracing/export.js"
import { waitFor } from "./support/harness.js"

/** An exporter keeping each batch it is given; it answers at once unless held. */
class RecordingExporter implements SpanExporter {
  readonly batches: Array<{ readonly names: ReadonlyArray<string>; readonly suppressed: boolean }> = []
  private held: Array<() => void> | undefined
  shutDown = false
  failing = false

  hold(): void {
    this.held = []
  }

  release(): void {
    const held = this.held ?? []
    this.held = undefined
    for (const answer of held) answer()
  }

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.batches.push({ names: spans.map((span) => span.name), suppressed: isTracingSuppressed(context.active()) })
    const answer = () => done(this.failing ? { code: ExportResultCode.FAILED, error: new Error("collector refused") } : { code: ExportResultCode.SUCCESS })
    if (this.held === undefined) answer()
    else this.held.push(answer)
  }

  shutdown(): Promise<void> {
    this.shutDown = true
    return Promise.resolve()
  }

  exported(): number {
    return this.batches.reduce((sum, batch) => sum + batch.names.length, 0)
  }
}

/** A real AsyncLocalStorage context manager that counts the contexts entered through it. */
class CountingContextManager extends AsyncLocalStorageContextManager {
  entered = 0
  override with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(ctx: Context, fn: F, thisArg?: ThisParameterType<F>, ...args: A): ReturnType<F> {
    this.entered++
    return super.with(ctx, fn, thisArg, ...args)
  }
}

const warnings: Array<string> = []
const logger = { warn: (_fields: Record<string, unknown>, message: string) => void warnings.push(message), info: () => undefined }

const setup = (options: Partial<SpanBatcherOptions> = {}, sampler?: Sampler) => {
  const exporter = new RecordingExporter()
  const batcher = new SpanBatcher(exporter, { maxQueueSize: 100, maxExportBatchSize: 10, scheduledDelayMillis: 3_600_000, logger, ...options })
  const tracer = new BasicTracerProvider({ spanProcessors: [batcher], ...(sampler === undefined ? {} : { sampler }) }).getTracer("test")
  const end = (count: number, prefix = "s") => {
    for (let i = 0; i < count; i++) tracer.startSpan(`${prefix}${i}`).end()
  }
  return { exporter, batcher, end }
}

const manager = new CountingContextManager()
beforeAll(() => {
  context.setGlobalContextManager(manager.enable())
})
afterAll(() => {
  context.disable()
})

describe("SpanBatcher", () => {
  it("exports a batch as soon as it is full, without waiting for the delay", async () => {
    const { exporter, end } = setup({ maxExportBatchSize: 3 })
    end(7)
    await waitFor(() => exporter.batches.length === 2, { what: "two full batches" })
    expect(exporter.batches.map((batch) => batch.names)).toEqual([
      ["s0", "s1", "s2"],
      ["s3", "s4", "s5"]
    ])
  })

  it("exports what is queued once the delay has passed", async () => {
    const { exporter, end } = setup({ scheduledDelayMillis: 20 })
    end(2)
    expect(exporter.batches).toEqual([])
    await waitFor(() => exporter.batches.length === 1, { what: "the delayed batch" })
    expect(exporter.batches[0]?.names).toEqual(["s0", "s1"])
  })

  it("flushes everything queued, in batches of at most maxExportBatchSize, one export at a time", async () => {
    const { exporter, batcher, end } = setup({ maxExportBatchSize: 4 })
    exporter.hold()
    end(10)
    const flushed = batcher.forceFlush()
    await waitFor(() => exporter.batches.length === 1, { what: "the first batch" })
    // The first batch is unanswered: nothing else is exported meanwhile.
    expect(exporter.batches).toHaveLength(1)
    exporter.release()
    await flushed
    expect(exporter.batches.map((batch) => batch.names.length)).toEqual([4, 4, 2])
    expect(exporter.batches.flatMap((batch) => batch.names)).toEqual(Array.from({ length: 10 }, (_, i) => `s${i}`))
  })

  it("flushes what was queued when its turn came, not the spans ended while it exports", async () => {
    const { exporter, batcher, end } = setup()
    exporter.hold()
    end(3)
    const flushed = batcher.forceFlush()
    await waitFor(() => exporter.batches.length === 1, { what: "the flush's batch" })
    end(2, "later")
    exporter.release()
    await flushed
    expect(exporter.batches.map((batch) => batch.names)).toEqual([["s0", "s1", "s2"]])
    await batcher.forceFlush()
    expect(exporter.batches.map((batch) => batch.names)).toEqual([["s0", "s1", "s2"], ["later0", "later1"]])
  })

  it("drops and counts the spans beyond maxQueueSize, with one warning", async () => {
    warnings.length = 0
    const { exporter, batcher, end } = setup({ maxQueueSize: 5, maxExportBatchSize: 5 })
    exporter.hold()
    end(12)
    expect(batcher.dropped()).toBe(7)
    expect(warnings).toEqual(["span queue full: spans are dropped and counted until the exporter catches up"])
    exporter.release()
    await batcher.forceFlush()
    expect(exporter.exported()).toBe(5)
  })

  it("rejects a flush whose export failed, and exports later batches all the same", async () => {
    const { exporter, batcher, end } = setup()
    exporter.failing = true
    end(3)
    await expect(batcher.forceFlush()).rejects.toThrow("collector refused")
    exporter.failing = false
    end(2, "next")
    await batcher.forceFlush()
    expect(exporter.batches.map((batch) => batch.names.length)).toEqual([3, 2])
  })

  it("exports no span that is recorded but not sampled", async () => {
    const recordOnly: Sampler = { shouldSample: () => ({ decision: SamplingDecision.RECORD }), toString: () => "record-only" }
    const { exporter, batcher, end } = setup({}, recordOnly)
    end(3)
    await batcher.forceFlush()
    expect(exporter.batches).toEqual([])
  })

  it("on shutdown exports what is queued, shuts the exporter down and ignores later spans", async () => {
    const { exporter, batcher, end } = setup()
    end(3)
    await batcher.shutdown()
    expect(exporter.exported()).toBe(3)
    expect(exporter.shutDown).toBe(true)
    end(2, "late")
    await batcher.forceFlush()
    expect(exporter.exported()).toBe(3)
  })

  it("enters no context to export unless told to suppress tracing, and then suppresses it", async () => {
    const quiet = setup()
    manager.entered = 0
    quiet.end(3)
    await quiet.batcher.forceFlush()
    expect(quiet.exporter.batches).toEqual([{ names: ["s0", "s1", "s2"], suppressed: false }])
    expect(manager.entered).toBe(0)

    const suppressing = setup({ suppressTracingOnExport: () => true })
    suppressing.end(3)
    await suppressing.batcher.forceFlush()
    expect(suppressing.exporter.batches).toEqual([{ names: ["s0", "s1", "s2"], suppressed: true }])
    expect(manager.entered).toBe(1)
  })

  it("gives an exporter that makes its own batches those, and drops and counts a span its batch refuses, with one warning", async () => {
    warnings.length = 0
    /** A batch that refuses spans named `bad…`, as an encoder refuses a span it cannot write. */
    class PickyBatch extends SpanList {
      override add(span: ReadableSpan): void {
        if (span.name.startsWith("bad")) throw new Error("cannot encode")
        super.add(span)
      }
    }
    const made: Array<PickyBatch> = []
    const exported: Array<ReadonlyArray<string>> = []
    const exporter: BatchingExporter<PickyBatch> = {
      newBatch: () => {
        const batch = new PickyBatch()
        made.push(batch)
        return batch
      },
      exportBatch: (batch, done) => {
        exported.push(batch.spans.map((span) => span.name))
        done({ code: ExportResultCode.SUCCESS })
      },
      shutdown: () => Promise.resolve()
    }
    const batcher = new SpanBatcher(exporter, { maxQueueSize: 100, maxExportBatchSize: 3, scheduledDelayMillis: 3_600_000, logger })
    const tracer = new BasicTracerProvider({ spanProcessors: [batcher] }).getTracer("test")
    for (const name of ["s0", "bad0", "s1", "bad1", "s2", "s3"]) tracer.startSpan(name).end()
    await batcher.forceFlush()
    expect(exported).toEqual([["s0", "s1", "s2"], ["s3"]])
    expect(made).toHaveLength(2)
    // A batch whose only span was refused is not sent empty.
    tracer.startSpan("bad2").end()
    await batcher.forceFlush()
    expect(exported).toHaveLength(2)
    expect(batcher.dropped()).toBe(3)
    expect(warnings).toEqual(["a span could not be encoded: it is dropped and counted"])
  })
})
