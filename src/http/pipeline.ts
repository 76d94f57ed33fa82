/**
 * One request, start to end: route, server span, authentication and scope, rate limit, NATS
 * check, body (Content-Type, limit, JSON, schema), handler, and one JSON response — every failure
 * through `toHttpError`. The log line of a request carries its trace ids and never a token,
 * payload, webhook URL or body.
 *
 * The server span (tracer `codeq/http`) has as parent whatever trace context the request carries
 * — W3C `traceparent`/`tracestate`, or B3 when the global propagator accepts it — and parents the
 * spans the request starts, e.g. `codeq.task.create`. Its attributes follow the OpenTelemetry
 * HTTP conventions with the route template, never the query, headers or body.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http"
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, propagation, trace, type Context, type Span } from "@opentelemetry/api"
import { formatTraceparent } from "../tracing/codec.js"
import { ATTR } from "../tracing/conventions.js"
import type { Telemetry } from "../tracing/spans.js"
import { authorize, type Authenticator, type Principal } from "./auth.js"
import { parseJson, readBody, requireJsonContentType } from "./decode.js"
import { HttpError, toHttpError, unavailable } from "./errors.js"
import type { ConnectionWatch } from "../eventlog/connection.js"
import type { RateLimiter } from "./auth.js"
import type { Reply, Router } from "./router.js"

export const HTTP_TRACER = "codeq/http"

export interface ServerSpan {
  readonly span: Span
  /** The request's context with the server span set. */
  readonly context: Context
  /** Ends the span with the response status. */
  end(status: number): void
  /** Fields that join a log line to the span. */
  logFields(): { trace_id: string; span_id: string; traceparent: string }
}

export const startServerSpan = (telemetry: Telemetry, method: string, routeTemplate: string | undefined, headers: IncomingHttpHeaders): ServerSpan => {
  const parent = propagation.extract(ROOT_CONTEXT, headers)
  const span = telemetry.tracer(HTTP_TRACER).startSpan(
    routeTemplate === undefined ? method : `${method} ${routeTemplate}`,
    {
      kind: SpanKind.SERVER,
      attributes: { "http.request.method": method, ...(routeTemplate !== undefined ? { "http.route": routeTemplate } : {}) }
    },
    parent
  )
  return {
    span,
    context: trace.setSpan(parent, span),
    end: (status) => {
      span.setAttribute("http.response.status_code", status)
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR })
      span.end()
    },
    logFields: () => {
      const ctx = span.spanContext()
      return { trace_id: ctx.traceId, span_id: ctx.spanId, traceparent: formatTraceparent(ctx) }
    }
  }
}

/**
 * One structured line per request (and per unexpected failure): info, warn for 4xx, error for 5xx;
 * debug for probes and scrapes (`/healthz`, `/readyz`, `/metrics`) whatever their status.
 */
export interface HttpLogEntry {
  readonly level: "debug" | "info" | "warn" | "error"
  readonly msg: string
  readonly method: string
  readonly route: string | undefined
  readonly status: number
  readonly duration_ms: number
  readonly tenant?: string
  readonly trace_id: string
  readonly span_id: string
  readonly traceparent: string
  /** For 5xx: the kind of failure (error name and message of the cause), never request data. */
  readonly error?: string
}

export interface PipelineDeps {
  readonly router: Router
  readonly auth: Authenticator
  readonly limiter: RateLimiter | undefined
  readonly watch: ConnectionWatch
  readonly telemetry: Telemetry
  readonly bodyLimit: number
  readonly log: ((entry: HttpLogEntry) => void) | undefined
  /** Aborted when the server closes: ends long-polls early. */
  readonly shutdown: AbortSignal
}

const ANONYMOUS: Principal = { tenant: "", subject: undefined, role: "anonymous", scopes: new Set(), eventTypes: undefined, key: "anonymous" }

const send = (res: ServerResponse, reply: Reply): void => {
  if (res.headersSent || res.destroyed) return
  if (reply.text !== undefined) {
    res.writeHead(reply.status, { ...reply.headers, "Cache-Control": "no-store", "Content-Type": reply.text.contentType, "Content-Length": Buffer.byteLength(reply.text.content) })
    res.end(reply.text.content)
    return
  }
  const payload = reply.status === 204 || reply.body === undefined ? undefined : JSON.stringify(reply.body)
  res.writeHead(reply.status, {
    ...reply.headers,
    "Cache-Control": "no-store",
    ...(payload !== undefined ? { "Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(payload) } : {})
  })
  res.end(payload)
}

const describeCause = (cause: unknown): string =>
  cause instanceof Error ? `${cause.name}: ${cause.message}`.slice(0, 300) : typeof cause === "string" ? cause.slice(0, 300) : "unknown"

export const handleRequest = async (deps: PipelineDeps, req: IncomingMessage, res: ServerResponse): Promise<void> => {
  const started = performance.now()
  const method = req.method ?? "GET"
  const url = URL.canParse(`http://localhost${req.url ?? "/"}`) ? new URL(`http://localhost${req.url ?? "/"}`) : new URL("http://localhost/")
  const match = deps.router.match(method, url.pathname)
  const template = match.kind === "found" ? match.route.path : undefined
  const span = startServerSpan(deps.telemetry, method, template, req.headers)
  const abort = new AbortController()
  const onShutdown = () => abort.abort()
  deps.shutdown.addEventListener("abort", onShutdown, { once: true })
  res.on("close", () => {
    if (!res.writableFinished) abort.abort()
    deps.shutdown.removeEventListener("abort", onShutdown)
  })
  let principal: Principal | undefined
  let reply: Reply
  let failure: HttpError | undefined
  try {
    if (match.kind === "not_found") throw new HttpError({ status: 404, body: { error: `no route for ${method} ${url.pathname}` } })
    if (match.kind === "method_not_allowed")
      throw new HttpError({ status: 405, body: { error: `${method} is not allowed here; use ${match.allow.join(", ")}` }, headers: { Allow: match.allow.join(", ") } })
    const { route, params } = match
    if (route.access.kind !== "public") {
      principal = await deps.auth.authenticate(req.headers.authorization)
      authorize(principal, route.access)
      span.span.setAttribute(ATTR.tenantId, principal.tenant)
      deps.limiter?.take(principal.key)
    }
    if (route.needsNats !== false && !deps.watch.connected) throw unavailable("NATS is unreachable")
    if (route.bodySchema !== undefined) requireJsonContentType(req)
    const body = route.bodySchema === undefined ? undefined : parseJson(await readBody(req, deps.bodyLimit))
    reply = await route.invoke({ principal: principal ?? ANONYMOUS, params, query: url.searchParams, body, signal: abort.signal, trace: span.context })
  } catch (error) {
    failure = toHttpError(error)
    reply = { status: failure.status, body: failure.body, ...(failure.headers !== undefined ? { headers: failure.headers } : {}) }
  }
  send(res, reply)
  span.end(reply.status)
  if (deps.log !== undefined) {
    try {
      deps.log({
        level: match.kind === "found" && match.route.quiet === true ? "debug" : reply.status >= 500 ? "error" : reply.status >= 400 ? "warn" : "info",
        msg: "http request",
        method,
        route: template,
        status: reply.status,
        duration_ms: Math.round((performance.now() - started) * 10) / 10,
        ...(principal !== undefined ? { tenant: principal.tenant } : {}),
        ...span.logFields(),
        ...(failure !== undefined && failure.status >= 500 ? { error: describeCause(failure.cause ?? failure.body.error) } : {})
      })
    } catch {
      // A logger never breaks a request.
    }
  }
}
