/**
 * Tracing fails open (DESIGN §6): a collector that is down, refuses TLS, or cannot even be
 * reached by a constructed exporter costs one warning and counted drops, never a refused start
 * or a broker that waits on its telemetry.
 */
import { trace } from "@opentelemetry/api"
import { afterEach, describe, expect, it } from "vitest"
import type { TracingConfigInput } from "../src/tracing/config.js"
import { SPANS, TRACERS } from "../src/tracing/conventions.js"
import type { TracingLogger } from "../src/tracing/export.js"
import { setupTracing, type SetupTracingOptions, type TracingHandle } from "../src/tracing/setup.js"
import { closedPort, startOtlpReceiver, type OtlpReceiver } from "./support/otlpReceiver.js"

interface LogEntry {
  readonly level: "warn" | "info"
  readonly fields: Record<string, unknown>
  readonly message: string
}

const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

/** Tracing with a logger that records what it says; shut down after the test. */
const startTracing = (input: TracingConfigInput, options: Partial<SetupTracingOptions> = {}) => {
  const entries: LogEntry[] = []
  const logger: TracingLogger = {
    warn: (fields, message) => void entries.push({ level: "warn", fields, message }),
    info: (fields, message) => void entries.push({ level: "info", fields, message })
  }
  const handle: TracingHandle = setupTracing({ tracingEnabled: true, ...input }, { env: {}, logger, ...options })
  cleanups.push(() => handle.shutdown(1_000))
  return { handle, warnings: () => entries.filter((entry) => entry.level === "warn"), entries }
}

const receiverFor = async (): Promise<OtlpReceiver> => {
  const receiver = await startOtlpReceiver()
  cleanups.push(() => receiver.stop())
  return receiver
}

const endSpans = (count: number) => {
  const tracer = trace.getTracer(TRACERS.repository)
  const ids = new Set<string>()
  for (let i = 0; i < count; i++) {
    const span = tracer.startSpan(SPANS.heartbeat)
    ids.add(span.spanContext().spanId)
    span.end()
  }
  return ids
}

describe("a collector that is down (port closed)", () => {
  it("starts, drops and counts every span, warns once, and never makes span.end wait on the collector", async () => {
    const port = await closedPort()
    const { handle, warnings } = startTracing({ tracingOtlpEndpoint: `127.0.0.1:${port}`, tracingOtlpInsecure: true })

    const ids = endSpans(1_000)
    // 1,000 spans ended and one batch handed to the exporter, yet no export has completed:
    // ending a span queued it and returned; nothing waited for the collector's answer.
    expect(ids.size).toBe(1_000)
    expect(handle.exportFailures()).toBe(0)

    expect(await handle.flush()).toBe("failed")
    expect(handle.counters()).toEqual({ exportFailures: 1, droppedSpans: 1_000, exportedSpans: 0 })
    expect(warnings()).toHaveLength(1)
    expect(warnings()[0]?.fields).toMatchObject({ endpoint: `127.0.0.1:${port}` })

    endSpans(100)
    expect(await handle.flush()).toBe("failed")
    expect(handle.counters()).toMatchObject({ exportFailures: 2, droppedSpans: 1_100 })
    expect(warnings()).toHaveLength(1)
  })

  it("finishes shutdown by its deadline even though the final flush cannot be delivered", async () => {
    const port = await closedPort()
    const { handle } = startTracing({ tracingOtlpEndpoint: `127.0.0.1:${port}`, tracingOtlpInsecure: true })
    endSpans(10)
    expect(["failed", "timed_out"]).toContain(await handle.shutdown(2_000))
    expect(handle.counters().exportedSpans).toBe(0)
  })
})

describe("a collector that refuses TLS", () => {
  it("with insecure=false against a plaintext receiver, fails open: one warning, counted drops, nothing received", async () => {
    const receiver = await receiverFor()
    const { handle, warnings } = startTracing({ tracingOtlpEndpoint: `localhost:${receiver.port}`, tracingOtlpInsecure: false })
    expect(handle.config.insecure).toBe(false)

    endSpans(5)
    expect(await handle.flush()).toBe("failed")
    endSpans(5)
    expect(await handle.flush()).toBe("failed")

    expect(handle.counters()).toEqual({ exportFailures: 2, droppedSpans: 10, exportedSpans: 0 })
    expect(warnings()).toHaveLength(1)
    expect(String(warnings()[0]?.fields.error)).toMatch(/SSL|TLS/)
    expect(receiver.requests()).toBe(0)
  })
})

describe("a collector that comes back", () => {
  it("warns once while it refuses, logs the recovery, then delivers again", async () => {
    const receiver = await receiverFor()
    const { handle, warnings, entries } = startTracing({ tracingOtlpEndpoint: receiver.endpoint, tracingOtlpInsecure: true })
    receiver.setBehaviour("unavailable")
    endSpans(3)
    expect(await handle.flush()).toBe("failed")
    endSpans(3)
    expect(await handle.flush()).toBe("failed")
    expect(warnings()).toHaveLength(1)

    receiver.setBehaviour("accept")
    const delivered = endSpans(4)
    expect(await handle.flush()).toBe("flushed")
    const spans = await receiver.waitForSpans((all) => all.length === 4)
    expect(new Set(spans.map((span) => span.spanId))).toEqual(delivered)
    expect(entries.filter((entry) => entry.message === "span export recovered")).toHaveLength(1)
    expect(handle.counters()).toEqual({ exportFailures: 2, droppedSpans: 6, exportedSpans: 4 })
  })
})

describe("an exporter that cannot be created", () => {
  it("still starts, warns once at setup, and keeps giving spans ids while dropping them", async () => {
    const { handle, warnings } = startTracing(
      { tracingOtlpEndpoint: "127.0.0.1:4317" },
      {
        createExporter: () => {
          throw new Error("no transport")
        }
      }
    )
    expect(warnings()).toHaveLength(1)
    expect(warnings()[0]?.fields).toMatchObject({ error: "no transport" })

    const ids = endSpans(20)
    expect(ids.size).toBe(20)
    expect(await handle.flush()).toBe("failed")
    expect(handle.counters()).toMatchObject({ exportFailures: 1, droppedSpans: 20 })
    expect(warnings()).toHaveLength(1)
  })
})
