/**
 * Routes as data: method, path template, access level, body schema, documented responses and a
 * handler. The same declarations serve dispatch and the OpenAPI document. A route's body is
 * decoded with its schema before its handler runs, so handlers receive typed values only.
 */
import type { Context } from "@opentelemetry/api"
import type { Schema } from "effect"
import type { Access, Principal } from "./auth.js"
import { decodeWith } from "./decode.js"

export type Method = "GET" | "POST" | "DELETE"

/** What a handler answers; a body is sent as JSON, `text` as is (with its content type), none for 204. */
export interface Reply {
  readonly status: number
  readonly body?: unknown
  readonly text?: { readonly contentType: string; readonly content: string }
  readonly headers?: Readonly<Record<string, string>>
}

export interface RequestContext<B> {
  /** The caller; an anonymous principal (tenant "") on public routes. */
  readonly principal: Principal
  readonly params: Readonly<Record<string, string>>
  readonly query: URLSearchParams
  readonly body: B
  /** Aborts when the client goes away or the server closes (ends long-polls). */
  readonly signal: AbortSignal
  /** The context of the request's server span: parent of the spans the request starts. */
  readonly trace: Context
}

export interface ResponseDoc {
  readonly description: string
  readonly schema?: Schema.Schema.Any
}

export interface QueryDoc {
  readonly name: string
  readonly description: string
  readonly type: "integer" | "string"
  /** Bounds the server enforces (documented as `minimum` / `maximum`). */
  readonly minimum?: number
  readonly maximum?: number
  readonly enum?: ReadonlyArray<string>
}

interface RouteDocs {
  readonly method: Method
  /** Path template with `:param` segments, e.g. /v1/codeq/tasks/:id/result. */
  readonly path: string
  readonly summary: string
  readonly access: Access
  /** Whether the route talks to NATS (refused with 503 while it is unreachable). Default true. */
  readonly needsNats?: boolean
  /**
   * Probes and scrapes (health, readiness, metrics): polled every few seconds, so their request
   * lines are logged at debug whatever the status, instead of drowning the rest at info or error.
   */
  readonly quiet?: boolean
  readonly query?: ReadonlyArray<QueryDoc>
  readonly responses: Readonly<Record<number, ResponseDoc>>
}

export interface RouteSpec<B, I> extends RouteDocs {
  readonly body?: Schema.Schema<B, I>
  /**
   * The body as the document shows it, when the route decodes it in parts: batch create decodes
   * the envelope with `body`, then each item with the item schema this one names.
   */
  readonly documentedBody?: Schema.Schema.Any
  readonly handle: (ctx: RequestContext<B>) => Promise<Reply>
}

/** A route with its body type erased: `invoke` decodes the raw body and runs the handler. */
export interface Route extends RouteDocs {
  /** The body as documented; a route with none reads no body. */
  readonly bodySchema: Schema.Schema.Any | undefined
  readonly invoke: (ctx: RequestContext<unknown>) => Promise<Reply>
}

export const route = <B, I>(spec: RouteSpec<B, I>): Route => {
  const { body: schema, documentedBody, handle, ...docs } = spec
  return {
    ...docs,
    bodySchema: documentedBody ?? schema,
    invoke: (ctx) => handle({ ...ctx, body: schema === undefined ? (undefined as B) : decodeWith(schema, ctx.body) })
  }
}

export type Match =
  | { readonly kind: "found"; readonly route: Route; readonly params: Readonly<Record<string, string>> }
  | { readonly kind: "method_not_allowed"; readonly allow: ReadonlyArray<Method> }
  | { readonly kind: "not_found" }

const segments = (path: string) => path.split("/").filter((s) => s !== "")

export class Router {
  private readonly compiled: ReadonlyArray<{ readonly route: Route; readonly parts: ReadonlyArray<string> }>

  constructor(readonly routes: ReadonlyArray<Route>) {
    this.compiled = routes.map((r) => ({ route: r, parts: segments(r.path) }))
  }

  match(method: string, pathname: string): Match {
    const parts = segments(pathname)
    const allow: Array<Method> = []
    for (const { route: r, parts: template } of this.compiled) {
      const params = matchParts(template, parts)
      if (params === undefined) continue
      if (r.method === method) return { kind: "found", route: r, params }
      allow.push(r.method)
    }
    return allow.length > 0 ? { kind: "method_not_allowed", allow } : { kind: "not_found" }
  }
}

const matchParts = (template: ReadonlyArray<string>, parts: ReadonlyArray<string>): Record<string, string> | undefined => {
  if (template.length !== parts.length) return undefined
  const params: Record<string, string> = {}
  for (let i = 0; i < template.length; i++) {
    const expected = template[i] ?? ""
    const actual = parts[i] ?? ""
    if (expected.startsWith(":")) {
      try {
        params[expected.slice(1)] = decodeURIComponent(actual)
      } catch {
        params[expected.slice(1)] = actual
      }
    } else if (expected !== actual) return undefined
  }
  return params
}
