/**
 * The OTLP export's gRPC call over a plaintext HTTP/2 connection (node:http2), for a collector
 * reached without TLS and without compression — a sidecar, an in-cluster collector, Jaeger in
 * compose. Everything else (TLS, client certificates, gzip) goes through the exporter package's
 * grpc-js transport (otlpExporter.ts chooses).
 *
 * WHY: the request is already one encoded protobuf message (otlpEncode.ts). grpc-js copies it into
 * a frame of its own (~1.6 MB for a batch of 4,096 of codeq's spans) and runs its channel, filter
 * and call machinery around one unary call; here the 5-byte gRPC prefix and the request are written
 * to the stream as they are. Sending batches of 4,096 spans (1.6 MB) to a grpc-js receiver in
 * another process, a bare node:http2 call of this shape spent 1.8 µs of the sender's CPU a span
 * against 3.0 through grpc-js (three alternated runs each, the same request bytes).
 *
 * One unary call per export, as the gRPC protocol over HTTP/2 has it: POST to the method's path with
 * `content-type: application/grpc` and `te: trailers`, the deadline as `grpc-timeout`, the
 * exporter's metadata as headers; the answer's `grpc-status` (in the trailers, or in the headers
 * of a trailers-only answer) decides. A connection that fails, closes or is told to go away is
 * replaced at the next call.
 */
import http2 from "node:http2"
import type { ExportResponse, IExporterTransport } from "@opentelemetry/otlp-exporter-base"

/** gRPC status codes (grpc/doc/statuscodes.md) used here. */
const OK = 0
const DEADLINE_EXCEEDED = 4

/** A longer deadline would overflow Node's timers (at most 2³¹−1 ms). */
const MAX_TIMEOUT_MS = 2 ** 31 - 1
/** `grpc-timeout` takes at most 8 digits: milliseconds up to this, whole seconds beyond. */
const MAX_TIMEOUT_DIGITS_VALUE = 99_999_999
/**
 * The largest answer read: gRPC's default limit on a received message. An export's answer is a
 * few bytes (a partial success's count and message); a server sending more is not read further.
 */
const MAX_ANSWER_BYTES = 4 * 2 ** 20

/** The `grpc-timeout` header for a deadline of `ms` milliseconds (gRPC over HTTP/2: 1–8 digits and a unit). */
export const grpcTimeout = (ms: number): string =>
  ms <= MAX_TIMEOUT_DIGITS_VALUE ? `${ms}m` : `${Math.ceil(ms / 1000)}S`

/** A call that ended with a gRPC status other than OK; `code` is the status, as grpc-js reports it. */
export class GrpcCallError extends Error {
  constructor(
    readonly code: number,
    readonly details: string
  ) {
    super(`gRPC status ${code}${details === "" ? "" : `: ${details}`}`)
    this.name = "GrpcCallError"
  }
}

/** At most this much of a collector's `grpc-message` is kept: it ends up in a log line. */
const MAX_MESSAGE_CHARS = 1_000

/** What `grpc-message` carries, percent-encoded by the server, cut to `MAX_MESSAGE_CHARS`. */
const decodeMessage = (value: string | ReadonlyArray<string> | undefined): string => {
  const raw = (typeof value === "string" ? value : (value ?? []).join(",")).slice(0, 3 * MAX_MESSAGE_CHARS)
  let text: string
  try {
    text = decodeURIComponent(raw)
  } catch {
    text = raw
  }
  return text.length > MAX_MESSAGE_CHARS ? `${text.slice(0, MAX_MESSAGE_CHARS)}…` : text
}

const failure = (error: unknown): ExportResponse => ({ status: "failure", error: error instanceof Error ? error : new Error(String(error)) })

const headerOf = (headers: http2.IncomingHttpHeaders, name: string): string | undefined => {
  const value = headers[name]
  return Array.isArray(value) ? value[0] : value
}

/** A connection and the calls on it still waiting for their answer (failed with it, if it fails). */
interface Connection {
  readonly session: http2.ClientHttp2Session
  readonly calls: Set<(error: unknown) => void>
}

export class PlaintextGrpcTransport implements IExporterTransport {
  private connection: Connection | undefined

  /**
   * @param authority `host:port` of the collector.
   * @param path the method's path, `/<package>.<Service>/<Method>`.
   * @param headers the call's metadata as HTTP/2 headers (user agent included).
   */
  constructor(
    private readonly authority: string,
    private readonly path: string,
    private readonly headers: Readonly<http2.OutgoingHttpHeaders>
  ) {}

  send(data: Uint8Array, timeoutMillis: number): Promise<ExportResponse> {
    const timeoutMs = Math.max(1, Math.min(MAX_TIMEOUT_MS, Math.ceil(timeoutMillis)))
    let connection: Connection
    let stream: http2.ClientHttp2Stream
    try {
      connection = this.connect()
      stream = connection.session.request({
        ...this.headers,
        ":method": "POST",
        ":path": this.path,
        "content-type": "application/grpc",
        te: "trailers",
        "grpc-timeout": grpcTimeout(timeoutMs)
      })
    } catch (error) {
      return Promise.resolve(failure(error))
    }
    return new Promise<ExportResponse>((resolve) => {
      let settled = false
      const finish = (response: ExportResponse) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        connection.calls.delete(fail)
        resolve(response)
      }
      const fail = (error: unknown) => finish(failure(error))
      const timer = setTimeout(() => {
        fail(new GrpcCallError(DEADLINE_EXCEEDED, "deadline exceeded"))
        stream.close(http2.constants.NGHTTP2_CANCEL)
      }, timeoutMs)
      // The connection's own failure (refused, reset) is the call's, whatever the stream reports.
      connection.calls.add(fail)
      let status: string | undefined
      let message: string | ReadonlyArray<string> | undefined
      let httpStatus: number | undefined
      const received: Array<Buffer> = []
      let receivedBytes = 0
      stream.on("response", (headers) => {
        httpStatus = headers[":status"]
        status = headerOf(headers, "grpc-status")
        message = headers["grpc-message"]
      })
      stream.on("trailers", (trailers) => {
        status = headerOf(trailers, "grpc-status") ?? status
        message = trailers["grpc-message"] ?? message
      })
      stream.on("data", (chunk: Buffer) => {
        receivedBytes += chunk.length
        if (receivedBytes <= MAX_ANSWER_BYTES) received.push(chunk)
        else {
          fail(new Error(`the collector's answer passed ${MAX_ANSWER_BYTES} bytes`))
          stream.close(http2.constants.NGHTTP2_CANCEL)
        }
      })
      stream.on("error", fail)
      stream.on("close", () => {
        if (status === undefined) {
          fail(new Error(httpStatus === undefined ? "the collector closed the call without an answer" : `the collector answered HTTP ${httpStatus} without a gRPC status`))
          return
        }
        const code = Number(status)
        if (code !== OK) {
          fail(new GrpcCallError(code, decodeMessage(message)))
          return
        }
        // The answer is one length-prefixed message (ExportTraceServiceResponse), often empty.
        const body = Buffer.concat(received)
        const length = body.length >= 5 ? body.readUInt32BE(1) : 0
        finish({ status: "success", data: body.subarray(5, 5 + length) })
      })
      const prefix = Buffer.allocUnsafe(5)
      prefix[0] = 0 // not compressed
      prefix.writeUInt32BE(data.byteLength, 1)
      stream.write(prefix)
      stream.end(Buffer.from(data.buffer, data.byteOffset, data.byteLength))
    })
  }

  shutdown(): void {
    this.connection?.session.close()
    this.connection = undefined
  }

  /** The open connection, or a new one when there is none or it is going away. */
  private connect(): Connection {
    const open = this.connection
    if (open !== undefined && !open.session.closed && !open.session.destroyed) return open
    const connection: Connection = { session: http2.connect(`http://${this.authority}`), calls: new Set() }
    const { session, calls } = connection
    const forget = () => {
      if (this.connection === connection) this.connection = undefined
    }
    // A failed connection fails its calls; the next call connects again. One told to go away
    // finishes its calls and closes.
    session.on("error", (error) => {
      forget()
      for (const fail of [...calls]) fail(error)
    })
    session.on("goaway", () => {
      forget()
      session.close()
    })
    session.on("close", forget)
    // An idle connection never keeps the process alive; a call's deadline timer does while it runs.
    session.unref()
    this.connection = connection
    return connection
  }
}
