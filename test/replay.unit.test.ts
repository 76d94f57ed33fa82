/**
 * Replay's pure parts: reading records from the wire bytes and from header objects alike, the
 * audit's rules one by one, the OTLP/JSON and ReadableSpan shapes, the tree, and the command
 * line's errors.
 */
import { describe, expect, it } from "vitest"
import { SpanKind, SpanStatusCode } from "@opentelemetry/api"
import { headers, type Msg } from "nats"
import { auditTask } from "../src/replay/audit.js"
import type { LogRecord, ReplaySpan, TaskTrace } from "../src/replay/model.js"
import { otlpJsonRequest, readableSpanOf, replayResource, SpanShipper } from "../src/replay/otlp.js"
import { PartlyExported } from "../src/tracing/export.js"
import { ExportResultCode, type ExportResult } from "@opentelemetry/core"
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base"
import { progressLine } from "../src/replay/progress.js"
import { headerBlockOf, parseHeaderBlock } from "../src/eventlog/rawHeaders.js"
import { makeRecord, nsFromRfc3339 } from "../src/eventlog/window/records.js"
import { parseTraceparent } from "../src/tracing/codec.js"
import { parseAck } from "../src/eventlog/acks.js"
import { renderTree, spanForest } from "../src/replay/render.js"
import { recordFromWire } from "../src/eventlog/window/wireRecord.js"
import { parseReplayArgs } from "../src/cli/replayArgs.js"

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
const SUBJECT = "codeq.evt.acme.0b6f4c9e-2f1a-4c7e-9d3a-1f2e3d4c5b6a"
const TASK = "0b6f4c9e-2f1a-4c7e-9d3a-1f2e3d4c5b6a"

let seq = 0
let clock = 1_700_000_000_000_000_000n
/** One event record of a well-formed chain; override any field to break it. */
const record = (type: string, spanId: string, parent: string | undefined, overrides: Partial<LogRecord> = {}): LogRecord => {
  const start = (clock += 1_000_000n)
  const end = (clock += 2_000_000n)
  const s = ++seq
  return {
    seq: s,
    subject: SUBJECT,
    type,
    traceparent: `00-${TRACE}-${spanId}-01`,
    traceId: TRACE,
    spanId,
    traceFlags: 1,
    tracestate: undefined,
    baggage: undefined,
    parentSpanId: parent,
    spanStart: String(start),
    spanEnd: undefined,
    prevSeq: s - 1,
    timeNs: String(end),
    body: undefined,
    bodyError: undefined,
    ...overrides
  }
}

const CREATE = "aaaaaaaaaaaaaaa1"
const chain = (): Array<LogRecord> => {
  seq = 0
  return [
    record("TaskCreated", CREATE, "00f067aa0ba902b7", { prevSeq: 0 }),
    record("TaskClaimed", "aaaaaaaaaaaaaaa2", CREATE),
    record("TaskCompleted", "aaaaaaaaaaaaaaa3", CREATE),
    record("WebhookDelivered", "aaaaaaaaaaaaaaa4", "aaaaaaaaaaaaaaa3")
  ]
}

describe("records from the log", () => {
  const block = `NATS/1.0\r\nCodeq-Event: TaskClaimed\r\ntraceparent: 00-${TRACE}-aaaaaaaaaaaaaaa2-03\r\ntracestate: foo@=1,bar=2\r\nCodeq-Parent-Span: ${CREATE}\r\nCodeq-Span-Start: 1700000000000000001\r\nNats-Expected-Stream: CODEQ_EVENTS\r\nCodeq-Prev-Seq: 7\r\n\r\n`
  const body = JSON.stringify({ v: 1, type: "TaskClaimed", taskId: TASK, tenant: "acme", at: "2024-01-01T00:00:00Z" })

  it("reads the same record from the wire bytes, a header block and a nats.js header object, flags and trace state as recorded", () => {
    const bytes = Buffer.from(`${block}${body}`, "latin1")
    const fromWire = recordFromWire(bytes, 0, block.length, bytes.length, 9, SUBJECT, "1700000000000000009", "all", "spans")
    const fromBlock = makeRecord(9, SUBJECT, "1700000000000000009", parseHeaderBlock(block), Buffer.from(body), "all")
    const h = headers()
    h.set("Codeq-Event", "TaskClaimed")
    h.set("traceparent", `00-${TRACE}-aaaaaaaaaaaaaaa2-03`)
    h.set("tracestate", "foo@=1,bar=2")
    h.set("Codeq-Parent-Span", CREATE)
    h.set("Codeq-Span-Start", "1700000000000000001")
    h.set("Codeq-Prev-Seq", "7")
    // A message with only decoded headers (no nats.js internals): its block written back from them.
    const decoded = { headers: h, data: Buffer.from(body), subject: SUBJECT } as unknown as Msg
    const fromHeaders = makeRecord(9, SUBJECT, "1700000000000000009", parseHeaderBlock(headerBlockOf(decoded)), Buffer.from(body), "all")
    for (const r of [fromWire, fromBlock, fromHeaders])
      expect(r).toEqual({
        seq: 9,
        subject: SUBJECT,
        type: "TaskClaimed",
        traceparent: `00-${TRACE}-aaaaaaaaaaaaaaa2-03`,
        traceId: TRACE,
        spanId: "aaaaaaaaaaaaaaa2",
        traceFlags: 3,
        tracestate: "foo@=1,bar=2",
        baggage: undefined,
        parentSpanId: CREATE,
        spanStart: "1700000000000000001",
        prevSeq: 7,
        timeNs: "1700000000000000009",
        body: JSON.parse(body),
        bodyError: undefined
      })
  })

  it("reads header names in another case, and learns the type from the body when the header is missing", () => {
    const odd = `NATS/1.0\r\ncodeq-event: TaskHeartbeat\r\nTRACEPARENT: 00-${TRACE}-aaaaaaaaaaaaaaa5-01\r\n\r\n`
    const bytes = Buffer.from(`${odd}{}`, "latin1")
    expect(recordFromWire(bytes, 0, odd.length, bytes.length, 1, SUBJECT, "1", () => false, "spans")).toMatchObject({ type: "TaskHeartbeat", spanId: "aaaaaaaaaaaaaaa5" })
    const bare = "NATS/1.0\r\n\r\n"
    const untyped = Buffer.from(`${bare}${body}`, "latin1")
    expect(recordFromWire(untyped, 0, bare.length, untyped.length, 1, SUBJECT, "1", () => false, "spans")).toMatchObject({ type: "TaskClaimed", traceparent: undefined, traceId: undefined })
  })

  it("reads a value of another length than usual, blanks around values and the server's own headers wherever they stand", () => {
    const block = `NATS/1.0\r\nNats-Expected-Last-Subject-Sequence: 6\r\nCodeq-Event:  TaskClaimed \r\ntraceparent:  00-${TRACE}-aaaaaaaaaaaaaaa2-01  \r\nNats-Msg-Id: x\r\nCodeq-Parent-Span: ${CREATE} \r\nCodeq-Span-Start: 17\r\nCodeq-Span-End: 170000000000000000001\r\nCodeq-Prev-Seq: 6\r\n\r\n`
    const bytes = Buffer.from(`${block}{}`, "latin1")
    expect(recordFromWire(bytes, 0, block.length, bytes.length, 7, SUBJECT, "1", () => false, "spans")).toMatchObject({
      type: "TaskClaimed",
      traceId: TRACE,
      spanId: "aaaaaaaaaaaaaaa2",
      parentSpanId: CREATE,
      spanStart: "17",
      spanEnd: "170000000000000000001",
      prevSeq: 6
    })
  })

  it("reads a value shorter than its kind's usual length as it stands, not into the next line", () => {
    // The byte 55 after this traceparent's start is a CR (the span start's): a reader that took a
    // traceparent's usual length on trust would read three lines as one.
    const block = `NATS/1.0\r\nCodeq-Event: TaskClaimed\r\ntraceparent: 00-short\r\nCodeq-Parent-Span: abc\r\nCodeq-Span-Start: 123\r\nCodeq-Span-End: 13\r\nCodeq-Prev-Seq: 5\r\nNats-Expected-Last-Subject-Sequence: 5\r\n\r\n`
    const bytes = Buffer.from(`${block}{}`, "latin1")
    expect(recordFromWire(bytes, 0, block.length, bytes.length, 6, SUBJECT, "1", () => false, "spans")).toMatchObject({
      traceparent: "00-short",
      traceId: undefined,
      parentSpanId: "abc",
      spanStart: "123",
      spanEnd: "13",
      prevSeq: 5
    })
  })

  it("leaves out of an audit's records what only a span shows, and keeps a malformed traceparent to name it", () => {
    const block = `NATS/1.0\r\nCodeq-Event: TaskClaimed\r\ntraceparent: 00-${TRACE}-aaaaaaaaaaaaaaa2-03\r\ntracestate: a=1\r\nbaggage: k=v\r\nX-Other: 1\r\nCodeq-Parent-Span: ${CREATE}\r\nCodeq-Span-Start: 1700000000000000001\r\nCodeq-Span-End: 1700000000000000002\r\n\r\n`
    const bytes = Buffer.from(`${block}{}`, "latin1")
    const spans = recordFromWire(bytes, 0, block.length, bytes.length, 3, SUBJECT, "1700000000000000003", () => false, "spans")
    const audit = recordFromWire(bytes, 0, block.length, bytes.length, 3, SUBJECT, "1700000000000000003", () => false, "audit")
    expect(spans).toMatchObject({ traceparent: `00-${TRACE}-aaaaaaaaaaaaaaa2-03`, tracestate: "a=1", baggage: "k=v", spanEnd: "1700000000000000002" })
    expect(audit).toEqual({ ...spans, traceparent: undefined, tracestate: undefined, baggage: undefined, spanEnd: undefined })
    const malformed = Buffer.from(`NATS/1.0\r\nCodeq-Event: TaskClaimed\r\ntraceparent: 00-nothex\r\n\r\n{}`, "latin1")
    expect(recordFromWire(malformed, 0, malformed.length - 2, malformed.length, 4, SUBJECT, "1", () => false, "audit")).toMatchObject({ traceparent: "00-nothex", traceId: undefined })
  })

  it("parses ack subjects of both forms, with the nanosecond timestamp and the pending count", () => {
    expect(parseAck("$JS.ACK.CODEQ_EVENTS.c1.1.42.40.1700000000123456789.17")).toEqual({ delivered: 1, seq: 42, timeNs: "1700000000123456789", pending: 17 })
    expect(parseAck("$JS.ACK.hub.ACCHASH.CODEQ_EVENTS.c1.1.42.40.1700000000123456789.0.x9")).toEqual({ delivered: 1, seq: 42, timeNs: "1700000000123456789", pending: 0 })
    // Not ack subjects, or not whole ones: nothing is made up.
    for (const subject of ["$JS.ACK.S.c.1.2.3", "$JS.NAK.S.c.1.2.3.4.5", "$JS.ACK.S.c.1.x.3.4.5", "$JS.ACK.S.c.1.2.3.1a.5", "$JS.ACK.S.c.1.2.3..5", "", `$JS.ACK.${"t.".repeat(40)}1`])
      expect(parseAck(subject)).toBeUndefined()
    expect(parseAck("_INBOX.abc")).toBeUndefined()
    expect(nsFromRfc3339("2024-05-01T12:00:00.123456789Z")).toBe("1714564800123456789")
    expect(nsFromRfc3339("2024-05-01T12:00:00.5Z")).toBe("1714564800500000000")
  })

  it("reads a traceparent from the wire bytes by the rules the trace codec reads a string by, flags kept whole", () => {
    const span = "aaaaaaaaaaaaaaa2"
    // [value, valid]: the expectation written out, and the codec's verdict checked against it too.
    const values: ReadonlyArray<readonly [string, boolean]> = [
      [`00-${TRACE}-${span}-01`, true],
      [`00-${TRACE}-${span}-02`, true],
      [`01-${TRACE}-${span}-01-later`, true],
      [`ff-${TRACE}-${span}-01`, false],
      [`00-${TRACE}-${span}-01-x`, false],
      [`00-${TRACE}-${span}-01-`, false],
      [`00-${"0".repeat(32)}-${span}-01`, false],
      [`00-${TRACE}-${"0".repeat(16)}-01`, false],
      [`00-${TRACE.toUpperCase()}-${span}-01`, false],
      [`00-${TRACE.slice(1)}-${span}-01`, false],
      [`00-${TRACE}-${span}-1`, false],
      [`00-${TRACE}-${span}-0g`, false],
      [`0g-${TRACE}-${span}-01`, false],
      [`00-${TRACE.slice(0, -1)}\u00e9-${span}-01`, false],
      ["garbage", false]
    ]
    for (const [value, valid] of values) {
      expect(parseTraceparent(value) !== undefined, value).toBe(valid)
      const block = `NATS/1.0\r\nCodeq-Event: TaskClaimed\r\ntraceparent: ${value}\r\n\r\n`
      const bytes = Buffer.from(`${block}{}`, "utf8")
      const headerEnd = Buffer.byteLength(block, "utf8")
      for (const record of [recordFromWire(bytes, 0, headerEnd, bytes.length, 1, SUBJECT, "1", () => false, "spans"), makeRecord(1, SUBJECT, "1", parseHeaderBlock(block), Buffer.from("{}"), () => false)])
        expect(record, value).toMatchObject(valid ? { traceId: TRACE, spanId: span, traceFlags: Number.parseInt(value.slice(53, 55), 16) } : { traceId: undefined, spanId: undefined, traceFlags: 0 })
    }
  })
})

describe("the audit's rules", () => {
  it("finds nothing wrong with a well-formed chain, webhook included", () => {
    expect(auditTask(chain(), [])).toEqual([])
  })

  it("names the task and the rule for each broken link", () => {
    const cases: Array<[string, (r: Array<LogRecord>) => void]> = [
      ["trace-headers", (r) => void (r[1] = { ...(r[1] as LogRecord), traceparent: undefined, traceId: undefined, spanId: undefined })],
      ["trace-id", (r) => void (r[1] = { ...(r[1] as LogRecord), traceId: "11111111111111111111111111111111" })],
      ["parent-create", (r) => void (r[1] = { ...(r[1] as LogRecord), parentSpanId: "bbbbbbbbbbbbbbbb" })],
      ["parent-terminal", (r) => void (r[3] = { ...(r[3] as LogRecord), parentSpanId: CREATE })],
      ["duplicate-span", (r) => void (r[2] = { ...(r[2] as LogRecord), spanId: "aaaaaaaaaaaaaaa2" })],
      ["time-order", (r) => void (r[2] = { ...(r[2] as LogRecord), spanStart: String(BigInt((r[2] as LogRecord).timeNs) + 5_000_000n) })],
      ["missing-event", (r) => void (r[2] = { ...(r[2] as LogRecord), prevSeq: 1 })],
      ["orphan", (r) => void r.shift()]
    ]
    for (const [rule, breakIt] of cases) {
      const records = chain()
      breakIt(records)
      const problems = auditTask(records, [])
      expect(problems.map((p) => p.rule), rule).toContain(rule)
      expect(problems.find((p) => p.rule === rule), rule).toMatchObject({ tenant: "acme", taskId: TASK })
    }
  })

  it("calls a parent that is no span of the task unknown, and tolerates clock skew when told to", () => {
    const records = chain()
    records[1] = { ...(records[1] as LogRecord), parentSpanId: "cccccccccccccccc" }
    expect(auditTask(records, []).find((p) => p.rule === "parent-create")?.message).toMatch(/not in the task's log \(unknown\)/)
    const skewed = chain()
    skewed[2] = { ...(skewed[2] as LogRecord), spanStart: String(BigInt((skewed[2] as LogRecord).timeNs) + 1_000_000n) }
    expect(auditTask(skewed, []).map((p) => p.rule)).toContain("time-order")
    expect(auditTask(skewed, [], { skewMs: 5 })).toEqual([])
  })

  it("audits a fragment against its earlier events without reporting them again", () => {
    const records = chain()
    const prefix = records.splice(0, 2)
    expect(auditTask(records, prefix)).toEqual([])
    prefix[1] = { ...(prefix[1] as LogRecord), traceparent: undefined, traceId: undefined, spanId: undefined }
    expect(auditTask(records, prefix)).toEqual([])
  })
})

const span = (over: Partial<ReplaySpan> = {}): ReplaySpan => ({
  seq: 1,
  event: "TaskClaimed",
  traceId: TRACE,
  spanId: "aaaaaaaaaaaaaaa2",
  traceFlags: 1,
  traceState: "foo@=1",
  parentSpanId: CREATE,
  startNs: "1700000000000000001",
  endNs: "1700000000001500001",
  name: "codeq.task.claim",
  scope: "codeq/repository",
  kind: SpanKind.INTERNAL,
  attributes: { "codeq.attempt": 2, "codeq.worker_id": "w-1", "codeq.has_webhook": false, ratio: 0.5 },
  status: { code: SpanStatusCode.UNSET },
  ...over
})

describe("OpenTelemetry shapes", () => {
  it("writes the OTLP/JSON mapping: hex ids, 64-bit integers as strings, enums as numbers, spans grouped by scope under one resource", () => {
    const create = span({ seq: 0, spanId: CREATE, parentSpanId: undefined, name: "codeq.task.create", scope: "codeq/scheduler", traceFlags: 0 })
    const failed = span({ seq: 2, spanId: "aaaaaaaaaaaaaaa3", status: { code: SpanStatusCode.ERROR, message: "status" } })
    const request = otlpJsonRequest([create, span(), failed], "codeq-test")
    expect(request.resourceSpans).toHaveLength(1)
    const [resource] = request.resourceSpans
    expect(resource?.resource.attributes).toEqual([{ key: "service.name", value: { stringValue: "codeq-test" } }])
    expect(resource?.scopeSpans.map((s) => [s.scope.name, s.spans.length])).toEqual([["codeq/scheduler", 1], ["codeq/repository", 2]])
    expect(resource?.scopeSpans[1]?.spans[0]).toEqual({
      traceId: TRACE,
      spanId: "aaaaaaaaaaaaaaa2",
      traceState: "foo@=1",
      parentSpanId: CREATE,
      flags: 0x301,
      name: "codeq.task.claim",
      kind: 1,
      startTimeUnixNano: "1700000000000000001",
      endTimeUnixNano: "1700000000001500001",
      attributes: [
        { key: "codeq.attempt", value: { intValue: "2" } },
        { key: "codeq.worker_id", value: { stringValue: "w-1" } },
        { key: "codeq.has_webhook", value: { boolValue: false } },
        { key: "ratio", value: { doubleValue: 0.5 } }
      ],
      status: { code: 0 }
    })
    expect(resource?.scopeSpans[0]?.spans[0]).toMatchObject({ flags: 0x100 })
    expect(resource?.scopeSpans[1]?.spans[1]?.status).toEqual({ code: 2, message: "status" })
  })

  it("builds ReadableSpans with the original ids, a remote parent, explicit start and end, and the trace state verbatim", () => {
    const readable = readableSpanOf(span(), replayResource("codeq-test"))
    expect(readable.spanContext()).toMatchObject({ traceId: TRACE, spanId: "aaaaaaaaaaaaaaa2", traceFlags: 1 })
    expect(readable.spanContext().traceState?.serialize()).toBe("foo@=1")
    expect(readable.parentSpanContext).toMatchObject({ spanId: CREATE, isRemote: true })
    expect(readable.startTime).toEqual([1_700_000_000, 1])
    expect(readable.endTime).toEqual([1_700_000_000, 1_500_001])
    expect(readable.duration).toEqual([0, 1_500_000])
    expect(readable.instrumentationScope.name).toBe("codeq/repository")
    expect(readable.resource.attributes["service.name"]).toBe("codeq-test")
  })
})

describe("re-exporting rebuilt spans", () => {
  it("counts a batch sent in parts of which one failed as that part failed and the rest exported", async () => {
    const answers: Array<ExportResult> = [
      { code: ExportResultCode.FAILED, error: new PartlyExported(2, new Error("message larger than max")) },
      { code: ExportResultCode.SUCCESS }
    ]
    const sizes: Array<number> = []
    const exporter: SpanExporter = {
      export: (spans: ReadableSpan[], done: (result: ExportResult) => void) => {
        sizes.push(spans.length)
        done(answers.shift() ?? { code: ExportResultCode.FAILED, error: new Error("unexpected export") })
      },
      shutdown: () => Promise.resolve()
    }
    const shipper = new SpanShipper(exporter, "codeq-test", 5)
    await shipper.add(Array.from({ length: 8 }, (_, i) => span({ seq: i, spanId: `aaaaaaaaaaaaaab${i}` })))
    await shipper.close()
    expect(sizes).toEqual([5, 3])
    expect({ exported: shipper.exported, failed: shipper.failed, lastError: shipper.lastError }).toEqual({ exported: 6, failed: 2, lastError: "message larger than max" })
  })
})

describe("the tree", () => {
  const trace = (problems: TaskTrace["problems"] = []): TaskTrace => ({
    tenant: "acme",
    taskId: TASK,
    subject: SUBJECT,
    traceId: TRACE,
    remoteParentSpanId: "00f067aa0ba902b7",
    command: "render",
    status: "COMPLETED",
    attempts: 1,
    spans: [
      span({ seq: 1, event: "TaskCreated", spanId: CREATE, parentSpanId: "00f067aa0ba902b7", name: "codeq.task.create" }),
      span({ seq: 2 }),
      span({ seq: 3, event: "TaskCompleted", spanId: "aaaaaaaaaaaaaaa3", name: "codeq.task.submit_result" }),
      span({ seq: 4, event: "WebhookFailed", spanId: "aaaaaaaaaaaaaaa4", parentSpanId: "aaaaaaaaaaaaaaa3", name: "codeq.webhook.task_result", status: { code: SpanStatusCode.ERROR, message: "status" } })
    ],
    untraced: [],
    problems,
    closed: true,
    continued: false
  })

  it("nests transitions under the create and webhooks under the terminal span, the remote parent above", () => {
    const [root, ...others] = spanForest(trace())
    expect(others).toEqual([])
    expect(root?.name).toBe("codeq.task.create")
    expect(root?.children.map((c) => c.name)).toEqual(["codeq.task.claim", "codeq.task.submit_result"])
    expect(root?.children[1]?.children.map((c) => c.name)).toEqual(["codeq.webhook.task_result"])
    const text = renderTree(trace())
    expect(text).toMatch(/^trace 4bf92f3577b34da6a3ce929d0e0e4736 · task acme\/0b6f4c9e-2f1a-4c7e-9d3a-1f2e3d4c5b6a · render · COMPLETED · attempts 1/)
    expect(text).toContain("↑ remote parent 00f067aa0ba902b7")
    expect(text).toMatch(/└─ codeq\.webhook\.task_result .*✗ attempt .*ERROR status/)
  })

  it("marks a problem under the span it is about, and the task's own problems below", () => {
    const text = renderTree(trace([
      { rule: "parent-create", tenant: "acme", taskId: TASK, seq: 2, message: "parented elsewhere" },
      { rule: "orphan", tenant: "acme", taskId: TASK, seq: undefined, message: "no create" }
    ]))
    expect(text).toContain("⚠ [parent-create] seq 2: parented elsewhere")
    expect(text).toContain("⚠ [orphan]: no create")
  })

  it("draws progress with rate and ETA, and says when it is waiting for new events", () => {
    expect(progressLine({ read: 500, total: 1000, pending: 500, openTasks: 3, caughtUp: false }, 1000, false)).toMatch(/50% 500\/1,000 events · 500 ev\/s · ETA 1 s · 3 open tasks/)
    expect(progressLine({ read: 500, total: 1000, pending: 0, openTasks: 3, caughtUp: true }, 1000, true)).toMatch(/^following · 500 events/)
  })
})

describe("codeq replay's command line", () => {
  const error = (argv: ReadonlyArray<string>): string => {
    try {
      parseReplayArgs(argv, () => undefined)
      return "no error"
    } catch (e) {
      return e instanceof Error ? `${e.name}: ${e.message}` : String(e)
    }
  }

  it("takes the selection, format, export and audit flags", () => {
    expect(
      parseReplayArgs(["--task", TASK, "--tenant", "acme", "--since", "2024-05-01T00:00:00Z", "--from-seq", "10", "--format", "jsonl", "--export", "http://collector:4317/v1/traces", "--insecure", "--audit", "--skew-ms", "2"])
    ).toEqual({
      filter: { taskId: TASK, tenant: "acme", since: new Date("2024-05-01T00:00:00Z"), fromSeq: 10 },
      format: "jsonl",
      export: { endpoint: "collector:4317", insecure: true },
      audit: true,
      follow: false,
      skewMs: 2
    })
    expect(parseReplayArgs(["--help"], () => undefined)).toBeUndefined()
  })

  it("refuses unknown flags and bad values with a usage error naming the flag", () => {
    const cases: Array<[ReadonlyArray<string>, RegExp]> = [
      [["--bogus"], /UsageError: .*--bogus/],
      [["--task"], /UsageError: .*--task/],
      [["--task", "nope"], /UsageError: --task must be a task id/],
      [["--trace", "xyz"], /UsageError: --trace must be a trace id/],
      [["--trace", "0".repeat(32)], /UsageError: --trace/],
      [["--tenant", "Acme!"], /UsageError: --tenant must be/],
      [["--command", "a b"], /UsageError: --command must be/],
      [["--since", "yesterday"], /UsageError: --since must be an ISO 8601 instant/],
      [["--since", "2024-05-02T00:00:00Z", "--until", "2024-05-01T00:00:00Z"], /UsageError: --since must not be after --until/],
      [["--from-seq", "0"], /UsageError: --from-seq must be a stream sequence/],
      [["--from-seq", "9", "--to-seq", "3"], /UsageError: --from-seq must not be after --to-seq/],
      [["--format", "xml"], /UsageError: --format must be one of tree, jsonl, otlp-json/],
      [["--export", "ftp://x:1"], /UsageError: --export must be host:port/],
      [["--insecure"], /UsageError: --insecure applies to --export only/],
      [["--follow", "--until", "2024-05-01T00:00:00Z"], /UsageError: --follow .* --until/],
      [["--skew-ms", "soon"], /UsageError: --skew-ms must be/],
      [["extra"], /UsageError: unexpected argument "extra"/]
    ]
    for (const [argv, expected] of cases) expect(error(argv), argv.join(" ")).toMatch(expected)
  })
})

describe("the wire reader", () => {
  /** A scripted peer speaking the server's side of the protocol, writing its bytes in `chunk`-sized pieces. */
  const peer = async (messages: ReadonlyArray<Buffer>, chunk: number) => {
    const { createServer } = await import("node:net")
    const server = createServer((socket) => {
      socket.write('INFO {"server_id":"scripted","proto":1,"headers":true}\r\n')
      let served = false
      socket.on("data", (data: Buffer) => {
        const text = data.toString("latin1")
        if (text.includes("PING")) socket.write("PONG\r\n")
        if (text.includes("PUB $JS.API.CONSUMER.MSG.NEXT.") && !served) {
          served = true
          const all = Buffer.concat([...messages.slice(0, 2), Buffer.from("PING\r\n"), ...messages.slice(2)])
          for (let i = 0; i < all.length; i += chunk) socket.write(all.subarray(i, i + chunk))
        }
      })
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    return { server, port: (server.address() as { port: number }).port }
  }
  const hmsg = (n: number, pending: number, body: string) => {
    const head = `NATS/1.0\r\nCodeq-Event: TaskClaimed\r\ntraceparent: 00-${TRACE}-${String(n).padStart(16, "a")}-01\r\nCodeq-Parent-Span: ${CREATE}\r\nCodeq-Span-Start: 17000000000000000${String(n).padStart(2, "0")}\r\nNats-Expected-Stream: S\r\nCodeq-Prev-Seq: ${n - 1}\r\n\r\n`
    const size = Buffer.byteLength(head) + Buffer.byteLength(body)
    return Buffer.from(`HMSG ${SUBJECT} 1 $JS.ACK.S.C.1.${n}.${n}.17000000000000001${String(n).padStart(2, "0")}.${pending} ${Buffer.byteLength(head)} ${size}\r\n${head}${body}\r\n`)
  }

  it("cuts messages out of any split of the stream, answers the server's PING, and reads the pending count", async () => {
    const { WireSource } = await import("../src/eventlog/window/wire.js")
    const bodies = ['{"a":1}', `{"payload":"${"é".repeat(300)}"}`, "{}", '{"b":[1,2,3]}']
    const messages = bodies.map((body, i) => hmsg(i + 1, bodies.length - 1 - i, body))
    for (const chunk of [1, 7, 64, 100_000]) {
      const { server, port } = await peer(messages, chunk)
      const source = await WireSource.open({ host: "127.0.0.1", port }, { stream: "S", consumer: "C", batch: 100, bodies: "all", headers: "spans" })
      const got: Array<LogRecord> = []
      while (source.pending !== 0) got.push(...(await source.next(5_000)))
      await source.close()
      server.close()
      expect(got.map((r) => r.seq), `chunks of ${chunk}`).toEqual([1, 2, 3, 4])
      expect(got.map((r) => r.body)).toEqual(bodies.map((b) => JSON.parse(b) as unknown))
      expect(got[2]).toMatchObject({ type: "TaskClaimed", spanId: "aaaaaaaaaaaaaaa3", parentSpanId: CREATE, prevSeq: 2, timeNs: "1700000000000000103", spanStart: "1700000000000000003" })
    }
  })
})
