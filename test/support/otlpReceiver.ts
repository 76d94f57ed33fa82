/**
 * A real OTLP gRPC receiver, in-process on a free loopback port: a @grpc/grpc-js server
 * implementing `opentelemetry.proto.collector.trace.v1.TraceService/Export`, decoding each
 * request with protobufjs from the OTLP trace schema below and keeping the spans in a plain
 * shape. Tests point the real exporter at it and wait for spans with a deadline, never a sleep.
 */
import { createServer } from "node:net"
import { Server, ServerCredentials, status, type ServerUnaryCall, type sendUnaryData } from "@grpc/grpc-js"
import protobuf from "protobufjs"

/** The subset of opentelemetry-proto (common, resource, trace, collector/trace) the exporter sends. */
const OTLP_TRACE_PROTO = `
syntax = "proto3";
package otlp;
message AnyValue {
  oneof value {
    string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4;
    ArrayValue array_value = 5; KeyValueList kvlist_value = 6; bytes bytes_value = 7;
  }
}
message ArrayValue { repeated AnyValue values = 1; }
message KeyValueList { repeated KeyValue values = 1; }
message KeyValue { string key = 1; AnyValue value = 2; }
message InstrumentationScope { string name = 1; string version = 2; repeated KeyValue attributes = 3; uint32 dropped_attributes_count = 4; }
message Resource { repeated KeyValue attributes = 1; uint32 dropped_attributes_count = 2; }
message Status { string message = 2; int32 code = 3; }
message Span {
  bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4; fixed32 flags = 16;
  string name = 5; int32 kind = 6; fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9; uint32 dropped_attributes_count = 10; Status status = 15;
}
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; string schema_url = 3; }
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ExportTraceServiceResponse {}
`

const EXPORT_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
const root = protobuf.parse(OTLP_TRACE_PROTO).root
const ExportRequest = root.lookupType("otlp.ExportTraceServiceRequest")
const EMPTY_RESPONSE = Buffer.alloc(0)

export type AttributeValue = string | number | boolean | ReadonlyArray<AttributeValue> | { readonly [key: string]: AttributeValue }

/** One span as the receiver got it. Ids are lower-case hex; times are Unix nanoseconds. */
export interface ReceivedSpan {
  readonly traceId: string
  readonly spanId: string
  /** Undefined for a root span. */
  readonly parentSpanId: string | undefined
  readonly traceState: string | undefined
  readonly name: string
  readonly kind: number
  readonly scope: { readonly name: string; readonly version: string | undefined }
  readonly attributes: Readonly<Record<string, AttributeValue>>
  /** The resource's attributes, `service.name` among them. */
  readonly resource: Readonly<Record<string, AttributeValue>>
  readonly start: bigint
  readonly end: bigint
  /** OTLP status code (0 unset, 1 ok, 2 error) and message. */
  readonly status: { readonly code: number; readonly message: string | undefined }
  /** OTLP span flags: W3C trace flags in the low byte, parent-is-remote bits above. */
  readonly flags: number
}

/** What the receiver answers: accept, never answer (a stuck collector), or refuse as unavailable. */
export type ReceiverBehaviour = "accept" | "hang" | "unavailable"

interface WireAnyValue {
  stringValue?: string
  boolValue?: boolean
  intValue?: string
  doubleValue?: number
  arrayValue?: { values?: WireAnyValue[] }
  kvlistValue?: { values?: WireKeyValue[] }
  bytesValue?: string
}
interface WireKeyValue {
  key: string
  value?: WireAnyValue
}
interface WireSpan {
  traceId?: string
  spanId?: string
  traceState?: string
  parentSpanId?: string
  name?: string
  kind?: number
  startTimeUnixNano?: string
  endTimeUnixNano?: string
  attributes?: WireKeyValue[]
  status?: { code?: number; message?: string }
  flags?: number
}
interface WireRequest {
  resourceSpans?: Array<{ resource?: { attributes?: WireKeyValue[] }; scopeSpans?: Array<{ scope?: { name?: string; version?: string }; spans?: WireSpan[] }> }>
}

const hex = (base64: string | undefined): string => Buffer.from(base64 ?? "", "base64").toString("hex")

const valueOf = (value: WireAnyValue | undefined): AttributeValue => {
  if (value === undefined) return ""
  if (value.stringValue !== undefined) return value.stringValue
  if (value.boolValue !== undefined) return value.boolValue
  if (value.intValue !== undefined) return Number(value.intValue)
  if (value.doubleValue !== undefined) return value.doubleValue
  if (value.arrayValue !== undefined) return (value.arrayValue.values ?? []).map(valueOf)
  if (value.kvlistValue !== undefined) return attributesOf(value.kvlistValue.values)
  return hex(value.bytesValue)
}

const attributesOf = (list: ReadonlyArray<WireKeyValue> | undefined): Record<string, AttributeValue> =>
  Object.fromEntries((list ?? []).map((kv) => [kv.key, valueOf(kv.value)]))

/** Decodes one Export request body into received spans. */
export const decodeExportRequest = (body: Buffer): ReceivedSpan[] => {
  const request = ExportRequest.toObject(ExportRequest.decode(body), { longs: String, bytes: String }) as WireRequest
  return (request.resourceSpans ?? []).flatMap((rs) => {
    const resource = attributesOf(rs.resource?.attributes)
    return (rs.scopeSpans ?? []).flatMap((ss) =>
      (ss.spans ?? []).map((span): ReceivedSpan => {
        const parent = hex(span.parentSpanId)
        return {
          traceId: hex(span.traceId),
          spanId: hex(span.spanId),
          parentSpanId: parent === "" ? undefined : parent,
          traceState: span.traceState === undefined || span.traceState === "" ? undefined : span.traceState,
          name: span.name ?? "",
          kind: span.kind ?? 0,
          scope: { name: ss.scope?.name ?? "", version: ss.scope?.version },
          attributes: attributesOf(span.attributes),
          resource,
          start: BigInt(span.startTimeUnixNano ?? "0"),
          end: BigInt(span.endTimeUnixNano ?? "0"),
          status: { code: span.status?.code ?? 0, message: span.status?.message === undefined || span.status.message === "" ? undefined : span.status.message },
          flags: span.flags ?? 0
        }
      })
    )
  })
}

/** The fields on the way from a request to a span: ResourceSpans (1) → ScopeSpans (2) → Span (2). */
const SPAN_PATH = [1, 2, 2]

/**
 * The number of spans in one Export request, from its structure alone, without decoding a span:
 * what a benchmark's receiver does, so that its own decoding does not compete for the CPU with
 * the processes measured. Throws on a request cut short.
 */
export const countExportRequestSpans = (body: Uint8Array): number => {
  const reader = protobuf.Reader.create(body)
  const count = (end: number, depth: number): number => {
    if (end > body.length) throw new Error("truncated message")
    let spans = 0
    while (reader.pos < end) {
      const tag = reader.uint32()
      if ((tag & 7) !== 2 || tag >>> 3 !== SPAN_PATH[depth]) reader.skipType(tag & 7)
      else if (depth === SPAN_PATH.length - 1) {
        spans++
        reader.skipType(2)
      } else {
        const length = reader.uint32()
        spans += count(reader.pos + length, depth + 1)
      }
    }
    if (reader.pos !== end) throw new Error("truncated message")
    return spans
  }
  return count(body.length, 0)
}

/** What the receiver keeps of each request: every span decoded (tests), or only their count (benchmarks). */
export type ReceiverKeeps = "spans" | "count"

interface Waiter {
  readonly predicate: (spans: ReadonlyArray<ReceivedSpan>) => boolean
  readonly resolve: (spans: ReadonlyArray<ReceivedSpan>) => void
  readonly reject: (error: Error) => void
}

/** A running receiver. */
export interface OtlpReceiver {
  /** `127.0.0.1:<port>`, what `tracingOtlpEndpoint` takes. */
  readonly endpoint: string
  readonly port: number
  /** Every span received so far, in arrival order. */
  spans(): ReadonlyArray<ReceivedSpan>
  /** Spans received so far; with `keeps: "count"` the only record of them. */
  spanCount(): number
  /** Export calls answered so far (including empty ones). */
  requests(): number
  /** The metadata (request headers) of the last Export call, every value of each key, `-bin` ones as bytes. */
  lastMetadata(): Readonly<Record<string, ReadonlyArray<string | Buffer>>> | undefined
  /** Resolves with all spans once `predicate` holds; rejects at the deadline, listing what arrived. */
  waitForSpans(predicate: (spans: ReadonlyArray<ReceivedSpan>) => boolean, timeoutMs?: number): Promise<ReadonlyArray<ReceivedSpan>>
  setBehaviour(behaviour: ReceiverBehaviour): void
  /** Closes the port at once, cancelling calls in flight: a collector that went away. */
  stop(): Promise<void>
}

/**
 * Starts a receiver on a free loopback port (or `port`: a collector coming back where it was),
 * keeping every span decoded unless told to count only.
 */
export const startOtlpReceiver = async (options: { readonly keeps?: ReceiverKeeps; readonly port?: number } = {}): Promise<OtlpReceiver> => {
  const keeps = options.keeps ?? "spans"
  const received: ReceivedSpan[] = []
  let counted = 0
  let waiters: Waiter[] = []
  let requestCount = 0
  let metadata: Record<string, ReadonlyArray<string | Buffer>> | undefined
  let behaviour: ReceiverBehaviour = "accept"

  const notify = () => {
    waiters = waiters.filter((waiter) => {
      if (!waiter.predicate(received)) return true
      waiter.resolve([...received])
      return false
    })
  }

  const server = new Server()
  server.addService(
    {
      Export: {
        path: EXPORT_PATH,
        requestStream: false,
        responseStream: false,
        requestSerialize: (value: Buffer) => value,
        requestDeserialize: (bytes: Buffer) => bytes,
        responseSerialize: (value: Buffer) => value,
        responseDeserialize: (bytes: Buffer) => bytes
      }
    },
    {
      Export: (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
        metadata = call.metadata.toJSON()
        if (behaviour === "hang") return
        if (behaviour === "unavailable") return callback({ code: status.UNAVAILABLE, details: "receiver unavailable" })
        try {
          if (keeps === "count") counted += countExportRequestSpans(call.request)
          else received.push(...decodeExportRequest(call.request))
        } catch (cause) {
          return callback({ code: status.INVALID_ARGUMENT, details: `undecodable request: ${String(cause)}` })
        }
        requestCount++
        // Recorded before answering: when the exporter's callback fires, the spans are here.
        notify()
        callback(null, EMPTY_RESPONSE)
      }
    }
  )
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${options.port ?? 0}`, ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error)))
  )

  return {
    endpoint: `127.0.0.1:${port}`,
    port,
    spans: () => [...received],
    spanCount: () => (keeps === "count" ? counted : received.length),
    requests: () => requestCount,
    lastMetadata: () => metadata,
    setBehaviour: (next) => void (behaviour = next),
    waitForSpans: (predicate, timeoutMs = 10_000) =>
      new Promise((resolve, reject) => {
        if (predicate(received)) return resolve([...received])
        const waiter: Waiter = {
          predicate,
          resolve: (spans) => {
            clearTimeout(timer)
            resolve(spans)
          },
          reject: (error) => {
            clearTimeout(timer)
            reject(error)
          }
        }
        const timer = setTimeout(() => {
          waiters = waiters.filter((other) => other !== waiter)
          reject(new Error(`no matching spans within ${timeoutMs} ms; received: ${JSON.stringify(received.map((span) => span.name))}`))
        }, timeoutMs)
        waiters.push(waiter)
      }),
    stop: async () => {
      server.forceShutdown()
      for (const waiter of waiters) waiter.reject(new Error("receiver stopped"))
      waiters = []
    }
  }
}

/** A loopback port with nothing listening on it: where a down collector would be. */
export const closedPort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const probe = createServer()
    probe.once("error", reject)
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      probe.close(() => resolve(port))
    })
  })
