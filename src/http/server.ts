/**
 * The HTTP API server: codeQ's endpoints under /v1/codeq on node:http, a thin shell over the
 * library. It keeps nothing a request of another instance would need — leases are settled through
 * handles stored in the log — so any number of instances can serve behind one address. A watch on
 * the NATS connection makes requests fail fast with 503 while it is down instead of waiting out
 * an ack timeout.
 */
import { setMaxListeners } from "node:events"
import { STATUS_CODES, createServer, type Server } from "node:http"
import type { Duplex } from "node:stream"
import { ConnectionWatch } from "../eventlog/connection.js"
import type { AddressInfo } from "node:net"
import type { HttpBackend, MetricsSource } from "./backend.js"
import { Authenticator, RateLimiter, type AuthConfig, type RateLimitConfig } from "./auth.js"
import { handleRequest, type HttpLogEntry } from "./pipeline.js"
import { Router, type Route } from "./router.js"
import { adminRoutes } from "./adminRoutes.js"
import { systemRoutes } from "./systemRoutes.js"
import { taskRoutes } from "./tasksRoutes.js"
import { traceRoutes } from "./tracesRoutes.js"
import { uiPageRoutes, uiSessionRoutes, type UiOptions } from "./uiRoutes.js"
import { workerRoutes } from "./workerRoutes.js"

export interface HttpServerOptions {
  /** The library to serve: a `CodeqClient`, or its parts. */
  readonly client: HttpBackend
  /** Bearer tokens accepted: static development tokens and/or JWTs verified against a JWKS. */
  readonly auth: AuthConfig
  /** Default 8080; 0 picks a free port. */
  readonly port?: number
  /** Default 0.0.0.0. */
  readonly host?: string
  /** Largest request body accepted, in bytes (413 beyond). Default 1 MiB. */
  readonly bodyLimitBytes?: number
  /** Per-token rate limit; off when absent. */
  readonly rateLimit?: RateLimitConfig
  /** Receives one structured line per request; nothing is logged when absent. */
  readonly log?: (entry: HttpLogEntry) => void
  /** How long `close()` lets in-flight requests finish before cutting connections. Default 5 s. */
  readonly closeGraceMs?: number
  /** Prometheus text for `GET /metrics` (the broker's metrics); no such route when absent. */
  readonly metrics?: MetricsSource
  /** The operator page at /ui (always served); its settings, e.g. the Jaeger URL it links to. */
  readonly ui?: UiOptions
}

export interface RunningHttpServer {
  /** e.g. http://127.0.0.1:8080 */
  readonly url: string
  readonly port: number
  /** Stops accepting, ends long-polls, lets in-flight requests finish (up to the grace), closes. */
  close(): Promise<void>
}

export const DEFAULT_BODY_LIMIT = 1024 * 1024

export type { HttpBackend, MetricsSource } from "./backend.js"

/** Every route of the API, in match order. */

export const apiRoutes = (backend: HttpBackend, watch: ConnectionWatch, metrics?: MetricsSource, ui?: UiOptions): ReadonlyArray<Route> => {
  const routes: Array<Route> = []
  routes.push(...systemRoutes(backend, watch, () => routes, metrics), ...workerRoutes(backend), ...taskRoutes(backend), ...traceRoutes(backend), ...adminRoutes(backend), ...uiSessionRoutes(ui))
  return routes
}

/** What a request Node's HTTP parser refused broke: status, the part at fault, and a sentence. */
const parseFailure = (code: string | undefined): { readonly status: number; readonly field: string; readonly error: string } => {
  switch (code) {
    case "HPE_HEADER_OVERFLOW":
      return { status: 431, field: "headers", error: "the request headers are too large" }
    case "HPE_CHUNK_EXTENSIONS_OVERFLOW":
      return { status: 413, field: "Transfer-Encoding", error: "the request's chunk extensions are too large" }
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return { status: 408, field: "body", error: "the request did not arrive in time" }
    case "HPE_INVALID_CONTENT_LENGTH":
    case "HPE_UNEXPECTED_CONTENT_LENGTH":
      return { status: 400, field: "Content-Length", error: "the request's Content-Length is invalid (or conflicts with Transfer-Encoding)" }
    case "HPE_INVALID_TRANSFER_ENCODING":
    case "HPE_INVALID_CHUNK_SIZE":
    case "HPE_STRICT":
      return { status: 400, field: "Transfer-Encoding", error: "the request's chunked body is malformed" }
    case "HPE_INVALID_EOF_STATE":
      return { status: 400, field: "Content-Length", error: "the connection ended before the body its Content-Length announced" }
    case "HPE_INVALID_HEADER_TOKEN":
    case "HPE_LF_EXPECTED":
    case "HPE_CR_EXPECTED":
      return { status: 400, field: "headers", error: "the request headers are malformed" }
    default:
      return { status: 400, field: "request", error: "the request is not well-formed HTTP/1.1" }
  }
}

/**
 * Answers a request the HTTP parser refused (a wrong Content-Length, a malformed chunk, bytes
 * after a body) with the API's JSON error shape instead of Node's bare status line, then closes
 * the connection: what follows the broken request on it cannot be trusted.
 */
const answerParseFailure = (error: NodeJS.ErrnoException, socket: Duplex): void => {
  // Like Node's default: write only on a socket nothing was written to yet.
  if (error.code === "ECONNRESET" || !socket.writable || ("bytesWritten" in socket && socket.bytesWritten !== 0)) {
    socket.destroy()
    return
  }
  const failure = parseFailure(error.code)
  const body = JSON.stringify({ error: failure.error, field: failure.field, rule: "http" })
  socket.end(
    `HTTP/1.1 ${failure.status} ${STATUS_CODES[failure.status] ?? ""}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${body}`
  )
}

const listen = (server: Server, port: number, host: string): Promise<AddressInfo> =>
  new Promise((resolve, reject) => {
    server.once("error", reject)
    server.listen(port, host, () => {
      server.off("error", reject)
      resolve(server.address() as AddressInfo)
    })
  })

export const startHttpServer = async (options: HttpServerOptions): Promise<RunningHttpServer> => {
  const backend = options.client
  const watch = backend.watch ?? new ConnectionWatch(backend.nc)
  const shutdown = new AbortController()
  // Every request in flight listens for the shutdown: many at once are expected, not a leak.
  setMaxListeners(0, shutdown.signal)
  const deps = {
    // The operator page's static routes are served beside the API, outside its OpenAPI document.
    router: new Router([...apiRoutes(backend, watch, options.metrics, options.ui), ...uiPageRoutes()]),
    auth: new Authenticator(options.auth),
    limiter: options.rateLimit === undefined ? undefined : new RateLimiter(options.rateLimit),
    watch,
    telemetry: backend.repo.telemetry,
    bodyLimit: options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT,
    log: options.log,
    shutdown: shutdown.signal
  }
  const server = createServer((req, res) => {
    handleRequest(deps, req, res).catch(() => {
      // handleRequest answers every failure itself; this only guards against a broken socket.
      if (!res.headersSent) res.destroy()
    })
  })
  server.on("clientError", answerParseFailure)
  // Long-polls hold requests for up to 60 s; keep-alive connections may idle a little longer.
  server.requestTimeout = 120_000
  server.keepAliveTimeout = 65_000
  const address = await listen(server, options.port ?? 8080, options.host ?? "0.0.0.0")
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address === "0.0.0.0" ? "127.0.0.1" : address.address
  let closing: Promise<void> | undefined
  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        shutdown.abort()
        const force = setTimeout(() => server.closeAllConnections(), options.closeGraceMs ?? 5_000)
        // Keep-alive connections go idle as their last request finishes: close them as they do,
        // rather than waiting out the grace period for clients that keep them open.
        const reaper = setInterval(() => server.closeIdleConnections(), 50)
        server.close(() => {
          clearTimeout(force)
          clearInterval(reaper)
          watch.stop()
          resolve()
        })
        server.closeIdleConnections()
      }))
  }
}
