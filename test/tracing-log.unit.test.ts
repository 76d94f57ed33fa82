/**
 * Structured logs (DESIGN §6): JSON lines that carry trace_id, span_id and traceparent when bound
 * to a trace, and that never carry payloads, URLs, keys or credentials.
 */
import { ROOT_CONTEXT, TraceFlags, trace, type SpanContext } from "@opentelemetry/api"
import { describe, expect, it } from "vitest"
import { createLogger } from "../src/log/log.js"
import { traceFields, withTrace } from "../src/tracing/logFields.js"

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
const SPAN_ID = "00f067aa0ba902b7"
const SPAN: SpanContext = { traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: TraceFlags.SAMPLED }
const JOINED = { trace_id: TRACE_ID, span_id: SPAN_ID, traceparent: `00-${TRACE_ID}-${SPAN_ID}-01` }

/** A logger writing into an array, one parsed JSON object per line. */
const capturingLogger = (level = "info") => {
  const lines: Array<Record<string, unknown>> = []
  const logger = createLogger({ level, destination: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) } })
  return { logger, lines }
}

describe("traceFields", () => {
  it("takes the fields from a context's span", () => {
    expect(traceFields(trace.setSpanContext(ROOT_CONTEXT, SPAN))).toEqual(JOINED)
  })

  it("takes the fields from a span context", () => {
    expect(traceFields({ ...SPAN, traceFlags: TraceFlags.NONE })).toEqual({ ...JOINED, traceparent: `00-${TRACE_ID}-${SPAN_ID}-00` })
  })

  it("takes the fields from a persisted traceparent, normalised", () => {
    expect(traceFields(` 00-${TRACE_ID}-${SPAN_ID}-01 `)).toEqual(JOINED)
  })

  it.each([undefined, "", "garbage\nINJECTED", `00-${"0".repeat(32)}-${SPAN_ID}-01`])("gives no fields for %j", (source) => {
    expect(traceFields(source)).toEqual({})
  })

  it("gives no fields for a context without a span", () => {
    expect(traceFields(ROOT_CONTEXT)).toEqual({})
  })
})

describe("createLogger and withTrace", () => {
  it("writes JSON lines with a level name and an ISO time", () => {
    const { logger, lines } = capturingLogger()
    logger.info({ taskId: "t-1" }, "task created")
    expect(lines[0]).toMatchObject({ level: "info", msg: "task created", taskId: "t-1" })
    expect(new Date(String(lines[0]?.time)).toISOString()).toBe(lines[0]?.time)
  })

  it("binds the trace fields to every line of the child", () => {
    const { logger, lines } = capturingLogger()
    const bound = withTrace(logger, trace.setSpanContext(ROOT_CONTEXT, SPAN))
    bound.info("claimed")
    bound.warn({ attempt: 2 }, "nacked")
    expect(lines).toHaveLength(2)
    for (const line of lines) expect(line).toMatchObject(JOINED)
  })

  it("hands back the same logger when there is no trace to bind", () => {
    const { logger } = capturingLogger()
    expect(withTrace(logger, "not-a-traceparent")).toBe(logger)
  })

  it("censors payloads, results, URLs, idempotency keys and credentials, at the top level and one object down", () => {
    const { logger, lines } = capturingLogger()
    logger.info(
      {
        payload: { card: "4111" },
        result: "secret output",
        webhook: "https://hooks.example.com/t?sig=abc",
        url: "https://user:pw@example.com",
        idempotencyKey: "k-1",
        task: { payload: "x", webhookUrl: "https://h", command: "resize" },
        headers: { authorization: "Bearer abc", "x-api-key": "k", "content-type": "application/json" },
        req: { headers: { cookie: "session=1" } },
        apiKey: "k",
        password: "p",
        token: "t"
      },
      "request"
    )
    const line = JSON.stringify(lines[0])
    for (const secret of ["4111", "secret output", "hooks.example.com", "user:pw", "k-1", "Bearer abc", "session=1", "\"k\"", "\"p\"", "\"t\""]) {
      expect(line).not.toContain(secret)
    }
    expect(lines[0]).toMatchObject({ task: { command: "resize", payload: "[redacted]" }, headers: { "content-type": "application/json" } })
  })

  it("honours the level", () => {
    const { logger, lines } = capturingLogger("warn")
    logger.info("hidden")
    logger.warn("shown")
    expect(lines.map((line) => line.msg)).toEqual(["shown"])
  })
})
