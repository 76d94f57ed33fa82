/**
 * The operator page (issue 15): `GET /ui` serves a static shell, `/ui/style.css` its stylesheet and
 * `/ui/<module>.js` the browser modules compiled from src/ui/ by `npm run build`; none of them
 * needs a token, as none holds data. The page signs in with a bearer token the user pastes, keeps
 * it in memory, and calls the API with it like any client — so tenants, scopes and the admin
 * checks are the API's own. `GET /v1/codeq/ui/session` tells the page who the token is (tenant,
 * role, scopes; never the token) and where Jaeger is, when `CODEQ_UI_JAEGER_URL` says.
 *
 * Every static answer carries a Content-Security-Policy that allows scripts, styles and requests
 * to this origin only: even a string that slipped into the DOM as markup could not run a script.
 */
import { readFile } from "node:fs/promises"
import { Schema } from "effect"
import { ADMIN_SCOPE } from "./auth.js"
import type { Reply, Route } from "./router.js"
import { route } from "./router.js"
import { PAGE_CSS, PAGE_HTML } from "./uiPage.js"
import { AUTH_ERRORS } from "./errors.js"

/** Settings of the operator page. */
export interface UiOptions {
  /** Jaeger UI base URL (http or https); the page links a trace to `<jaegerUrl>/trace/<traceId>`. */
  readonly jaegerUrl?: string
}

export const UiSessionJson = Schema.Struct({
  tenant: Schema.String.annotations({ description: "the token's tenant: every read and write of the page is scoped to it" }),
  subject: Schema.optional(Schema.String),
  role: Schema.String,
  scopes: Schema.Array(Schema.String),
  admin: Schema.Boolean.annotations({ description: "the token has codeq:admin: queue statistics and the dead-letter queue" }),
  jaegerUrl: Schema.optional(Schema.String.annotations({ description: "Jaeger UI base URL (CODEQ_UI_JAEGER_URL), when configured" }))
}).annotations({ identifier: "UiSession" })

export type UiSession = typeof UiSessionJson.Type

const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "Content-Security-Policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "X-Frame-Options": "DENY"
}

const asset = (contentType: string, content: string): Reply => ({ status: 200, text: { contentType, content }, headers: SECURITY_HEADERS })

/**
 * Where the compiled browser modules are: beside this module's compiled directory in dist/. Run
 * from source (vitest, tsx), this file is a .ts one and the modules come from the build's dist/.
 */
const browserModules = (): URL =>
  import.meta.url.endsWith(".ts") ? new URL("../../dist/src/ui/", import.meta.url) : new URL("../ui/", import.meta.url)

/** Names a browser module may have: one path segment, no dots but the extension (no `..`, no maps). */
const MODULE_NAME = /^[a-z][A-Za-z0-9]*\.js$/

const notFound = (): Reply => ({ status: 404, body: { error: "no such asset" } })

/** The compiled modules, read once each; a missing one (no build) stays a 404 until a restart. */
const moduleReader = (dir: URL) => {
  const cache = new Map<string, Promise<string | undefined>>()
  return (name: string): Promise<string | undefined> => {
    let text = cache.get(name)
    if (text === undefined) {
      text = readFile(new URL(name, dir), "utf8").catch(() => undefined)
      cache.set(name, text)
    }
    return text
  }
}

const PUBLIC = { kind: "public" } as const

/** The page and its assets (public, and not in the OpenAPI document: they are not the API). */
export const uiPageRoutes = (dir: URL = browserModules()): ReadonlyArray<Route> => {
  const read = moduleReader(dir)
  const page = route({
    method: "GET",
    path: "/ui",
    summary: "The operator page",
    access: PUBLIC,
    needsNats: false,
    responses: { 200: { description: "the page" } },
    handle: async () => asset("text/html; charset=utf-8", PAGE_HTML)
  })
  return [
    page,
    route({
      method: "GET",
      path: "/ui/:asset",
      summary: "The operator page's stylesheet and browser modules",
      access: PUBLIC,
      needsNats: false,
      responses: { 200: { description: "the asset" }, 404: { description: "no such asset" } },
      handle: async ({ params }) => {
        const name = params.asset ?? ""
        if (name === "index.html") return asset("text/html; charset=utf-8", PAGE_HTML)
        if (name === "style.css") return asset("text/css; charset=utf-8", PAGE_CSS)
        if (!MODULE_NAME.test(name)) return notFound()
        const text = await read(name)
        return text === undefined ? notFound() : asset("text/javascript; charset=utf-8", text)
      }
    })
  ]
}

/** `GET /v1/codeq/ui/session`: what the page needs to know after sign-in. */
export const uiSessionRoutes = (options: UiOptions = {}): ReadonlyArray<Route> => [
  route({
    method: "GET",
    path: "/v1/codeq/ui/session",
    summary: "The caller as its token presents it (tenant, subject, role, scopes; never the token) and the operator page's settings",
    access: { kind: "tenant" },
    needsNats: false,
    responses: { 200: { description: "the session", schema: UiSessionJson }, ...AUTH_ERRORS },
    handle: async ({ principal }) => {
      const session: UiSession = {
        tenant: principal.tenant,
        ...(principal.subject !== undefined ? { subject: principal.subject } : {}),
        role: principal.role,
        scopes: [...principal.scopes].sort(),
        admin: principal.scopes.has(ADMIN_SCOPE),
        ...(options.jaegerUrl !== undefined ? { jaegerUrl: options.jaegerUrl } : {})
      }
      return { status: 200, body: session }
    }
  })
]
