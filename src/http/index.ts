/** The HTTP API's public surface. */
export { startHttpServer, apiRoutes, DEFAULT_BODY_LIMIT, type HttpBackend, type HttpServerOptions, type RunningHttpServer } from "./server.js"
export {
  ADMIN_SCOPE,
  WORKER_SCOPES,
  type AuthConfig,
  type StaticTokenConfig,
  type Principal,
  type RateLimitConfig,
  type WorkerScope
} from "./auth.js"
export type { JwtConfig } from "./jwt.js"
export type { HttpLogEntry } from "./pipeline.js"
export { openApiDocument } from "./systemRoutes.js"
export type { UiOptions } from "./uiRoutes.js"
export { HttpConfig, httpServerOptions } from "./config.js"
