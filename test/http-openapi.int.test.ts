/**
 * The OpenAPI document against the server: every numeric bound it states for a request body field
 * or a query parameter (minimum, maximum, minLength, maxLength, minItems, maxItems) is sent to the
 * server at the bound, which must be accepted, and one past it, which must be refused naming that
 * field; a number without a stated maximum (or minimum) must be accepted at a huge value. So the
 * document cannot claim a range the validators do not enforce, or miss one they do.
 */
import { randomUUID } from "node:crypto"
import { beforeAll, describe, expect, it } from "vitest"
import { apiRoutes, openApiDocument } from "../src/http/index.js"
import { DEFAULT_LIMITS } from "../src/tasks/limits.js"
import { useNatsServer } from "./support/harness.js"
import { STATIC_TOKENS, type ApiResponse } from "./support/jwks.js"
import { useHttpApi } from "./support/httpApi.js"

const nats = useNatsServer()

type Json = Record<string, unknown>
type Path = ReadonlyArray<string | number>

interface Document {
  readonly servers?: ReadonlyArray<{ readonly url: string; readonly variables?: Record<string, { readonly default: string }> }>
  readonly paths: Record<string, Record<string, Json>>
  readonly components: { readonly schemas: Record<string, Json> }
}

type Keyword = "minimum" | "maximum" | "minLength" | "maxLength" | "minItems" | "maxItems"

/** A documented bound, or a number without one ("unbounded"). */
interface Bound {
  readonly path: Path
  readonly keyword: Keyword | "noMaximum" | "noMinimum"
  readonly value: number
}

const KEYWORDS: ReadonlyArray<Keyword> = ["minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems"]

const fieldOf = (path: Path): string =>
  path.reduce<string>((out, key) => (typeof key === "number" ? `${out}[${key}]` : out === "" ? key : `${out}.${key}`), "")

const resolve = (doc: Document, schema: Json): Json => {
  const ref = schema.$ref
  if (typeof ref !== "string") return schema
  const target = doc.components.schemas[ref.replace("#/components/schemas/", "")]
  if (target === undefined) throw new Error(`unresolved ${ref}`)
  return resolve(doc, target)
}

/** Every bound of a schema and the fields under it, depth first; array items at index 0. */
const boundsOf = (doc: Document, raw: Json, path: Path): Array<Bound> => {
  const schema = resolve(doc, raw)
  const out: Array<Bound> = []
  for (const keyword of KEYWORDS) if (typeof schema[keyword] === "number") out.push({ path, keyword, value: schema[keyword] })
  if (schema.type === "integer" || schema.type === "number") {
    if (schema.maximum === undefined) out.push({ path, keyword: "noMaximum", value: Number.MAX_SAFE_INTEGER })
    if (schema.minimum === undefined) out.push({ path, keyword: "noMinimum", value: -Number.MAX_SAFE_INTEGER })
  }
  for (const [name, child] of Object.entries((schema.properties ?? {}) as Record<string, Json>)) out.push(...boundsOf(doc, child, [...path, name]))
  if (typeof schema.items === "object" && schema.items !== null) out.push(...boundsOf(doc, schema.items as Json, [...path, 0]))
  return out
}

const clone = <T>(value: T): T => structuredClone(value)

const getAt = (root: unknown, path: Path): unknown => path.reduce<unknown>((node, key) => (node as Record<string | number, unknown> | undefined)?.[key], root)

const setAt = (root: Json, path: Path, value: unknown): Json => {
  const copy = clone(root)
  let node = copy as Record<string | number, unknown>
  for (const key of path.slice(0, -1)) {
    const next = node[key]
    if (typeof next !== "object" || next === null) throw new Error(`the base request has nothing at ${fieldOf(path)}`)
    node = next as Record<string | number, unknown>
  }
  node[path[path.length - 1] as string | number] = value
  return copy
}

describe("HTTP API: the OpenAPI document states the server's own ranges", () => {
  const { call, http, client } = useHttpApi(nats)
  const producer = STATIC_TOKENS.acmeProducer.token
  const worker = STATIC_TOKENS.acmeWorker.token
  const admin = STATIC_TOKENS.acmeAdmin.token
  const createCmd = "range-create"
  const claimCmd = "range-claim"
  const unknownId = randomUUID()
  let endedId = ""
  let doc: Document

  beforeAll(async () => {
    doc = (await call("GET", "/v1/codeq/openapi.json")).json as unknown as Document
    // Claims that the document lets wait (waitSeconds without a maximum) find work at once.
    const batch = await call("POST", "/v1/codeq/tasks/batch", { token: producer, body: { tasks: Array.from({ length: 40 }, () => ({ command: claimCmd })) } })
    expect(batch.status).toBe(200)
    // GET routes read a completed task, so a result long-poll answers at once whatever its wait.
    const ended = await call("POST", "/v1/codeq/tasks", { token: producer, body: { command: "range-ended" } })
    endedId = String(ended.json.id)
    expect((await call("POST", "/v1/codeq/tasks/claim", { token: worker, body: { commands: ["range-ended"], waitSeconds: 10 } })).json.id).toBe(endedId)
    expect((await call("POST", `/v1/codeq/tasks/${endedId}/result`, { token: worker, body: { status: "COMPLETED", result: {} } })).status).toBe(200)
  })

  const artifact = { name: "a", url: "https://files.test/a" }
  /** A valid body per operation: each probe changes one field of it. */
  const bases: Readonly<Record<string, Json>> = {
    "POST /v1/codeq/tasks": { command: createCmd },
    "POST /v1/codeq/tasks/batch": { tasks: [{ command: createCmd }] },
    "POST /v1/codeq/tasks/claim": { commands: [claimCmd], waitSeconds: 0 },
    "POST /v1/codeq/tasks/claim/batch": { commands: [claimCmd], count: 1, waitSeconds: 0 },
    "POST /v1/codeq/tasks/{id}/heartbeat": {},
    "POST /v1/codeq/tasks/{id}/abandon": {},
    "POST /v1/codeq/tasks/{id}/nack": {},
    "POST /v1/codeq/tasks/{id}/cancel": {},
    "POST /v1/codeq/tasks/{id}/result": { status: "FAILED", error: "x", artifacts: [artifact] },
    "POST /v1/codeq/tasks/lookup": { idempotencyKey: "k" },
    "POST /v1/codeq/tasks/batch/results": { results: [{ taskId: unknownId, status: "FAILED", error: "x", artifacts: [artifact] }] }
  }

  /** A value of `length` characters that is valid in form for the field. */
  const text = (path: Path, length: number): string => {
    const name = path[path.length - 1]
    if (name === "webhook") {
      const prefix = "https://hooks.test/"
      return `${prefix}${"a".repeat(Math.max(0, length - prefix.length))}`.slice(0, Math.max(length, 0))
    }
    return "a".repeat(Math.max(length, 0))
  }

  /** An array of `length` valid items, like the base's first one (distinct commands for a claim). */
  const array = (base: Json, path: Path, length: number): Array<unknown> => {
    if (path[path.length - 1] === "commands") return Array.from({ length }, (_, i) => (i === 0 ? claimCmd : `range-other-${i}`))
    const first = getAt(base, [...path, 0])
    if (first === undefined) throw new Error(`the base request has no item at ${fieldOf(path)}[0]`)
    return Array.from({ length }, () => clone(first))
  }

  /** The probes of a bound: [value, accepted?]. */
  const probes = (bound: Bound, base: Json): Array<[unknown, boolean]> => {
    const { keyword, value, path } = bound
    switch (keyword) {
      case "minimum":
        return [[value, true], [value - 1, false]]
      case "maximum":
        return [[value, true], [value + 1, false]]
      case "noMaximum":
      case "noMinimum":
        return [[value, true]]
      case "minLength":
        return value > 0 ? [[text(path, value), true], [text(path, value - 1), false]] : [[text(path, value), true]]
      case "maxLength":
        return [[text(path, value), true], [text(path, value + 1), false]]
      case "minItems":
        return value > 0 ? [[array(base, path, value), true], [array(base, path, value - 1), false]] : [[array(base, path, value), true]]
      case "maxItems":
        return [[array(base, path, value), true], [array(base, path, value + 1), false]]
    }
  }

  const refusedNaming = (res: ApiResponse, field: string): boolean => {
    if (res.status === 400) return res.json.field === field
    const results = res.json.results
    return res.status === 200 && Array.isArray(results) && results.some((r: Json) => r.field === field)
  }

  const accepted = (res: ApiResponse): boolean => {
    if (res.status === 400 || res.status === 413 || res.status === 415 || res.status >= 500) return false
    const results = res.json.results
    return !(Array.isArray(results) && results.some((r: Json) => r.field !== undefined || r.code === 400))
  }

  const tokenFor = (operation: Json): string => {
    const description = String(operation.description ?? "")
    if (description.includes("codeq:admin") && !description.includes("producer")) return admin
    return /scope codeq:(claim|heartbeat|abandon|nack|result)/.test(description) ? worker : producer
  }

  /** Path parameters: an ended task for reads, a task that does not exist for writes (no side effects). */
  const concrete = (template: string, method: string) => template.replace(/\{[A-Za-z]+\}/g, method === "get" ? endedId : unknownId)

  it("lists where the API is served, resolvable against the server's address", async () => {
    expect(doc.servers?.length).toBeGreaterThan(0)
    const first = doc.servers?.[0]
    expect(first?.url).toBe("/")
    const viaServer = await fetch(new URL(`${first?.url.replace(/\/$/, "")}/v1/codeq/openapi.json`, http().url))
    expect(viaServer.status).toBe(200)
    for (const server of doc.servers ?? []) {
      const variables = [...server.url.matchAll(/\{([A-Za-z]+)\}/g)].map((m) => m[1] ?? "")
      for (const name of variables) expect(server.variables?.[name]?.default, `${server.url} {${name}}`).toEqual(expect.any(String))
    }
  })

  it("uses no bound keyword the walk does not check", () => {
    expect(JSON.stringify(doc)).not.toMatch(/"exclusive(Minimum|Maximum)"|"multipleOf"/)
  })

  it("states for every request body field and query parameter exactly the range the server accepts", { timeout: 240_000 }, async () => {
    const mismatches: Array<string> = []
    let checked = 0
    for (const [template, operations] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        const name = `${method.toUpperCase()} ${template}`
        const token = tokenFor(operation)
        const url = concrete(template, method)
        const content = (operation.requestBody as { content?: Record<string, { schema: Json }> } | undefined)?.content
        const bodySchema = content?.["application/json"]?.schema
        if (bodySchema !== undefined) {
          const bounds = boundsOf(doc, bodySchema, [])
          if (bounds.length === 0) continue
          const base = bases[name]
          if (base === undefined) {
            mismatches.push(`${name}: no base request in this test for a body with bounds`)
            continue
          }
          for (const bound of bounds) {
            for (const [value, shouldAccept] of probes(bound, base)) {
              const res = await call(method.toUpperCase(), url, { token, body: setAt(base, bound.path, value) })
              checked++
              const field = fieldOf(bound.path)
              const ok = shouldAccept ? accepted(res) : refusedNaming(res, field)
              if (!ok) mismatches.push(`${name} ${field} ${bound.keyword} ${bound.value}: sent ${JSON.stringify(value).slice(0, 40)}, expected ${shouldAccept ? "accepted" : `refused naming ${field}`}, got ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`)
            }
          }
        }
        for (const parameter of (operation.parameters ?? []) as Array<{ name: string; in: string; schema: Json }>) {
          if (parameter.in !== "query") continue
          for (const bound of boundsOf(doc, parameter.schema, [parameter.name])) {
            for (const [value, shouldAccept] of probes(bound, {})) {
              const res = await call(method.toUpperCase(), `${url}?${parameter.name}=${String(value)}`, { token })
              checked++
              const ok = shouldAccept ? accepted(res) : refusedNaming(res, parameter.name)
              if (!ok) mismatches.push(`${name} ?${parameter.name} ${bound.keyword} ${bound.value}: sent ${String(value)}, expected ${shouldAccept ? "accepted" : "refused"}, got ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`)
            }
          }
        }
      }
    }
    console.log(`checked ${checked} bound probes against the server`)
    expect(mismatches).toEqual([])
    expect(checked).toBeGreaterThan(60)
  })

  it("states the limits a server was configured with, not the defaults", () => {
    const limits = { ...DEFAULT_LIMITS, maxMaxAttempts: 7, maxLeaseSeconds: 600, maxClaimCommands: 3 }
    const c = client()
    const backend = { nc: c.nc, repo: c.repo, tasks: c.tasks, naming: c.naming, limits }
    const configured = openApiDocument(apiRoutes(backend, { connected: true } as never)) as unknown as Document
    const schemas = configured.components.schemas
    const props = (name: string) => (schemas[name]?.properties ?? {}) as Record<string, Json>
    expect(props("CreateTaskRequest").maxAttempts).toMatchObject({ minimum: 0, maximum: 7 })
    expect(props("CreateTaskRequest").leaseSeconds).toMatchObject({ maximum: 600 })
    expect(props("HeartbeatRequest").extendSeconds).toMatchObject({ maximum: 600 })
    expect(props("ClaimRequest").commands).toMatchObject({ maxItems: 3 })
  })

  it("documents 415 on every route that takes a body", () => {
    for (const [template, operations] of Object.entries(doc.paths))
      for (const [method, operation] of Object.entries(operations))
        if (operation.requestBody !== undefined) expect((operation.responses as Json)["415"], `${method} ${template}`).toBeDefined()
  })
})
