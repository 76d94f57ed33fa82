/**
 * Unauthenticated system routes: liveness (`/healthz`: the process serves), readiness (`/readyz`:
 * NATS connected and the streams exist — what a load balancer should route on) and the OpenAPI
 * 3.1 document, generated from the route declarations and the same Effect Schemas that validate
 * requests, so it cannot say something the server does not do; and `/metrics` when the broker
 * hands its metrics in. Probes and scrapes are polled every few seconds: their request lines are
 * logged at debug.
 */
import { JSONSchema, type Schema } from "effect"
import { claimsStream, eventsStream } from "../../streams/definitions.js"
import { ErrorBody, RETRY_AFTER_SECONDS } from "./errors.js"
import { HealthJson } from "./responses.js"
import { route, type Route } from "./router.js"
import type { ConnectionWatch } from "../eventlog/connection.js"
import { checkStreams } from "../eventlog/streams.js"
import type { HttpBackend, MetricsSource } from "./backend.js"

export type Readiness = { readonly ready: true } | { readonly ready: false; readonly error: string }

/** Ready when NATS answers and both codeq streams exist (within `timeoutMs`). */
export const checkReadiness = async (backend: HttpBackend, watch: ConnectionWatch, timeoutMs = 2_000): Promise<Readiness> => {
  if (!watch.connected) return { ready: false, error: "NATS is not connected" }
  return checkStreams(backend.nc, [eventsStream(backend.naming), claimsStream(backend.naming)], timeoutMs)
}

type Json = Record<string, unknown>

const toOpenApiPath = (path: string) => path.replace(/:([A-Za-z]+)/g, "{$1}")

const operationId = (route: Route) =>
  [route.method.toLowerCase(), ...route.path.replace(/^\/v1\/codeq\//, "").split("/")]
    .map((part) => part.replace(/^:/, "by-"))
    .join("-")
    .replace(/[-_]+([a-z])/g, (_m, c: string) => c.toUpperCase())

const STATUS_TEXT: Readonly<Record<number, string>> = { 200: "OK", 202: "Accepted", 204: "No Content" }

const UNSUPPORTED_MEDIA_TYPE = { description: "the body is not JSON: Content-Type must be application/json (rule content_type)", schema: ErrorBody }

/**
 * Where the API is: first the server that serves this document (a relative URL, right behind any
 * proxy or load balancer), then any broker by scheme and host. Paths start with /v1/codeq.
 */
export const SERVERS: ReadonlyArray<Json> = [
  { url: "/", description: "the codeq broker serving this document" },
  {
    url: "{scheme}://{host}",
    description: "a codeq broker by address",
    variables: {
      scheme: { default: "http", enum: ["http", "https"] },
      host: { default: "localhost:8080", description: "host and port (CODEQ_HTTP_PORT, default 8080)" }
    }
  }
]

export const openApiDocument = (routes: ReadonlyArray<Route>, version = "0.1.0"): Json => {
  const definitions: Record<string, JSONSchema.JsonSchema7> = {}
  const schemaOf = (schema: Schema.Schema.Any) =>
    JSONSchema.fromAST(schema.ast, { definitions, definitionPath: "#/components/schemas/", target: "openApi3.1" })
  const paths: Record<string, Json> = {}
  for (const route of routes) {
    const parameters = [
      ...[...route.path.matchAll(/:([A-Za-z]+)/g)].map((m) => ({
        name: m[1],
        in: "path",
        required: true,
        schema: { type: "string" },
        description: m[1] === "id" ? "task id (UUID)" : m[1]
      })),
      ...(route.query ?? []).map((q) => ({
        name: q.name,
        in: "query",
        required: false,
        schema: {
          type: q.type,
          ...(q.minimum !== undefined ? { minimum: q.minimum } : {}),
          ...(q.maximum !== undefined ? { maximum: q.maximum } : {}),
          ...(q.enum !== undefined ? { enum: q.enum } : {})
        },
        description: q.description
      }))
    ]
    // Every route with a body refuses a non-JSON one (the pipeline checks it before the handler).
    const documented = route.bodySchema !== undefined && route.responses[415] === undefined ? { ...route.responses, 415: UNSUPPORTED_MEDIA_TYPE } : route.responses
    const responses = Object.fromEntries(
      Object.entries(documented).map(([status, doc]) => [
        status,
        {
          description: doc.description || STATUS_TEXT[Number(status)] || status,
          ...(doc.schema !== undefined ? { content: { "application/json": { schema: schemaOf(doc.schema) } } } : {})
        }
      ])
    )
    const operation: Json = {
      operationId: operationId(route),
      summary: route.summary,
      ...(route.access.kind === "public" ? { security: [] } : {}),
      ...(route.access.kind === "scope" ? { description: `Needs the scope ${route.access.scope}.` } : {}),
      ...(route.access.kind === "admin" ? { description: "Needs the scope codeq:admin." } : {}),
      ...(route.access.kind === "producer" ? { description: "Needs a producer's token of the tenant (any role but worker) or the scope codeq:admin." } : {}),
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(route.bodySchema !== undefined
        ? { requestBody: { required: route.method === "POST", content: { "application/json": { schema: schemaOf(route.bodySchema) } } } }
        : {}),
      responses
    }
    const path = toOpenApiPath(route.path)
    paths[path] = { ...paths[path], [route.method.toLowerCase()]: operation }
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "codeq HTTP API",
      version,
      description: "codeQ-compatible task broker API. Errors are JSON {error, field?, rule?, reason?}."
    },
    servers: SERVERS,
    security: [{ bearer: [] }],
    paths,
    components: {
      schemas: definitions,
      securitySchemes: { bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT or a static token" } }
    }
  }
}

const PUBLIC = { kind: "public" } as const

export const systemRoutes = (
  backend: HttpBackend,
  watch: ConnectionWatch,
  documented: () => ReadonlyArray<Route>,
  metrics?: MetricsSource
): ReadonlyArray<Route> => {
  let document: Record<string, unknown> | undefined
  const metricsRoute =
    metrics === undefined
      ? []
      : [
          route({
            method: "GET",
            path: "/metrics",
            summary: "Prometheus metrics (text exposition format)",
            access: PUBLIC,
            needsNats: false,
            quiet: true,
            responses: { 200: { description: "the metrics" } },
            handle: async () => ({ status: 200, text: { contentType: metrics.contentType, content: await metrics.render() } })
          })
        ]
  return [
    ...metricsRoute,
    route({
      method: "GET",
      path: "/healthz",
      summary: "Liveness: the process is serving",
      access: PUBLIC,
      needsNats: false,
      quiet: true,
      responses: { 200: { description: "alive", schema: HealthJson } },
      handle: async () => ({ status: 200, body: { status: "ok" } })
    }),
    route({
      method: "GET",
      path: "/readyz",
      summary: "Readiness: NATS is connected and the codeq streams exist",
      access: PUBLIC,
      needsNats: false,
      quiet: true,
      responses: { 200: { description: "ready", schema: HealthJson }, 503: { description: "not ready", schema: HealthJson } },
      handle: async () => {
        const readiness = await checkReadiness(backend, watch)
        return readiness.ready
          ? { status: 200, body: { status: "ready" } }
          : { status: 503, body: { status: "not_ready", error: readiness.error }, headers: { "Retry-After": String(RETRY_AFTER_SECONDS) } }
      }
    }),
    route({
      method: "GET",
      path: "/v1/codeq/openapi.json",
      summary: "This API's OpenAPI 3.1 document",
      access: PUBLIC,
      needsNats: false,
      responses: { 200: { description: "the document" } },
      handle: async () => {
        document ??= openApiDocument(documented())
        return { status: 200, body: document }
      }
    })
  ]
}
