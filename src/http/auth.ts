/**
 * Who is calling: a bearer token becomes a Principal (tenant, subject, scopes, allowed commands),
 * from a static token of the configuration (development, tests) or a JWT verified against a JWKS.
 * The tenant comes only from the token (`tid`, then the aliases `tenantId` and `tenant_id`, which
 * must agree); every read and write is scoped to it, so another tenant's task is simply not found.
 * Raw tokens are never kept: static tokens are matched and rate-limited by their SHA-256.
 *
 * The per-token rate limit (off unless configured) is a token bucket per caller key, refilled
 * continuously; refusals are 429 with `Retry-After`. Buckets are per instance — a limit, not a
 * source of truth — so each of many instances behind one address allows the rate (size it so).
 */
import { createHash, timingSafeEqual } from "node:crypto"
import type { JWTPayload } from "jose"
import { TENANT_PATTERN, WORKER_ID_PATTERN } from "../domain/validation.js"
import { HttpError, forbidden, unauthorized } from "./errors.js"
import { JwtVerifier, looksLikeJwt, type JwtConfig } from "./jwt.js"

export const WORKER_SCOPES = ["codeq:claim", "codeq:heartbeat", "codeq:abandon", "codeq:nack", "codeq:result"] as const
export type WorkerScope = (typeof WORKER_SCOPES)[number]
export const ADMIN_SCOPE = "codeq:admin"

/** A development token and the identity it stands for. */
export interface StaticTokenConfig {
  readonly token: string
  readonly tenant: string
  /** The worker identity of leases taken with this token. Default `static-<hash of the token>`. */
  readonly subject?: string
  /** `worker` implies every worker scope, `admin` implies codeq:admin; `producer` implies none. */
  readonly role?: "producer" | "worker" | "admin"
  readonly scopes?: ReadonlyArray<string>
  /** Commands this token may claim (codeQ's `eventTypes`); absent or `*` allows all. */
  readonly eventTypes?: ReadonlyArray<string>
}

export interface AuthConfig {
  readonly staticTokens?: ReadonlyArray<StaticTokenConfig>
  readonly jwt?: JwtConfig
}

/** An authenticated caller. */
export interface Principal {
  readonly tenant: string
  readonly subject: string | undefined
  readonly role: string
  readonly scopes: ReadonlySet<string>
  readonly eventTypes: ReadonlyArray<string> | undefined
  /** Stable, non-secret key of the token (rate limiting). */
  readonly key: string
}

export type Access =
  | { readonly kind: "public" }
  /** Any authenticated caller of a tenant (create, reads). */
  | { readonly kind: "tenant" }
  | { readonly kind: "scope"; readonly scope: WorkerScope }
  /** A producer of the tenant — any token whose role is not `worker` — or an admin (cancel). */
  | { readonly kind: "producer" }
  | { readonly kind: "admin" }

const sha256 = (text: string): Buffer => createHash("sha256").update(text, "utf8").digest()

const TENANT_CLAIMS = ["tid", "tenantId", "tenant_id"] as const

/** The one tenant a token asserts; 403 when absent, malformed or conflicting. */
export const tenantOf = (claims: Readonly<Record<string, unknown>>): string => {
  let tenant: string | undefined
  for (const name of TENANT_CLAIMS) {
    const value = claims[name]
    if (value === undefined) continue
    if (typeof value !== "string" || !TENANT_PATTERN.test(value.trim())) throw forbidden(`the token's tenant claim ${name} is malformed`, "tenant")
    if (tenant !== undefined && tenant !== value.trim()) throw forbidden("the token's tenant claims (tid, tenantId, tenant_id) conflict", "tenant")
    tenant = value.trim()
  }
  if (tenant === undefined) throw forbidden("the token names no tenant (tid, tenantId or tenant_id)", "tenant")
  return tenant
}

const scopesOf = (claims: JWTPayload): Array<string> => {
  const out: Array<string> = []
  for (const value of [claims.scope, claims.scp]) {
    if (typeof value === "string") out.push(...value.split(/\s+/).filter((s) => s !== ""))
    else if (Array.isArray(value)) out.push(...value.filter((s): s is string => typeof s === "string"))
  }
  return out
}

/**
 * The commands a token may claim. A malformed restriction is refused rather than read as none:
 * a string or an object in `eventTypes` would otherwise let the token claim every command.
 */
const eventTypesOf = (value: unknown): ReadonlyArray<string> | undefined => {
  if (value === undefined) return undefined
  if (!Array.isArray(value) || !value.every((s): s is string => typeof s === "string"))
    throw forbidden("the token's eventTypes claim is malformed: it must be an array of command names", "event_type")
  return value
}

const withRole = (role: string, scopes: Iterable<string>): ReadonlySet<string> => {
  const set = new Set(scopes)
  if (role === "admin") set.add(ADMIN_SCOPE)
  return set
}

const staticPrincipal = (config: StaticTokenConfig, hash: Buffer): Principal => {
  const role = config.role ?? "producer"
  const scopes = config.scopes ?? (role === "worker" ? WORKER_SCOPES : [])
  return {
    tenant: config.tenant,
    subject: config.subject ?? `static-${hash.toString("hex").slice(0, 12)}`,
    role,
    scopes: withRole(role, scopes),
    eventTypes: config.eventTypes,
    key: `static:${hash.toString("hex")}`
  }
}

export class Authenticator {
  private readonly statics: ReadonlyArray<{ readonly hash: Buffer; readonly principal: Principal }>
  private readonly jwt: JwtVerifier | undefined

  constructor(config: AuthConfig) {
    this.statics = (config.staticTokens ?? []).map((token) => {
      if (!TENANT_PATTERN.test(token.tenant)) throw new Error(`a static token's tenant "${token.tenant}" must match ${TENANT_PATTERN.source}`)
      const hash = sha256(token.token)
      return { hash, principal: staticPrincipal(token, hash) }
    })
    this.jwt = config.jwt === undefined ? undefined : new JwtVerifier(config.jwt)
  }

  /** The caller behind an `Authorization` header; throws 401, 403 or (JWKS down) 503. */
  async authenticate(header: string | undefined): Promise<Principal> {
    if (header === undefined || header.trim() === "") throw unauthorized("missing Authorization header")
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header)
    if (match?.[1] === undefined) throw unauthorized("the Authorization header must be 'Bearer <token>'")
    const token = match[1]
    const hash = sha256(token)
    const known = this.statics.find((entry) => timingSafeEqual(entry.hash, hash))
    if (known !== undefined) return known.principal
    if (this.jwt === undefined || !looksLikeJwt(token)) throw unauthorized("unknown token")
    const claims = await this.jwt.verify(token)
    const role = typeof claims.role === "string" ? claims.role.toLowerCase() : "user"
    return {
      tenant: tenantOf(claims),
      subject: typeof claims.sub === "string" && claims.sub !== "" ? claims.sub : undefined,
      role,
      scopes: withRole(role, scopesOf(claims)),
      eventTypes: eventTypesOf(claims.eventTypes),
      key: `jwt:${hash.toString("hex")}`
    }
  }
}

/** Throws 403 unless the principal may use a route of this access level. */
export const authorize = (principal: Principal, access: Access): void => {
  if (access.kind === "scope" && !principal.scopes.has(access.scope)) throw forbidden(`this token lacks the scope ${access.scope}`, "scope")
  if (access.kind === "admin" && !principal.scopes.has(ADMIN_SCOPE)) throw forbidden(`this endpoint needs the scope ${ADMIN_SCOPE}`, "scope")
  if (access.kind === "producer" && principal.role === "worker" && !principal.scopes.has(ADMIN_SCOPE))
    throw forbidden(`this endpoint needs a producer's or an admin's token, not a worker's`, "role")
}

/**
 * The worker identity of leases taken with this token: its subject, or a digest of the subject
 * when it has characters a worker id may not (e.g. `auth0|123`). Deterministic, so any broker
 * instance recognises the holder.
 */
export const workerIdOf = (principal: Principal): string => {
  const subject = principal.subject
  if (subject === undefined) throw forbidden("a worker token needs a subject (sub): it is the lease holder's identity", "subject")
  return WORKER_ID_PATTERN.test(subject) ? subject : `sub-${sha256(subject).toString("hex").slice(0, 32)}`
}

/** The commands a claim may take: the requested ones if the token allows them, else all it allows. */
export const claimableCommands = (principal: Principal, requested: ReadonlyArray<string> | undefined): ReadonlyArray<string> => {
  const allowed = principal.eventTypes
  if (allowed === undefined || allowed.includes("*")) return requested ?? []
  if (requested === undefined || requested.length === 0) return allowed
  const refused = requested.find((command) => !allowed.includes(command))
  if (refused !== undefined) throw forbidden(`this token may not claim command ${refused}`, "event_type")
  return requested
}

export interface RateLimitConfig {
  /** Sustained requests per second per token. */
  readonly requestsPerSecond: number
  /** Requests allowed in a burst. Default: one second's worth (at least 1). */
  readonly burst?: number
}

interface Bucket {
  tokens: number
  updatedAt: number
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>()
  private readonly burst: number
  private lastSweep = 0

  constructor(
    private readonly config: RateLimitConfig,
    private readonly now: () => number = Date.now
  ) {
    if (!(config.requestsPerSecond > 0)) throw new Error("rateLimit.requestsPerSecond must be positive")
    this.burst = Math.max(1, config.burst ?? Math.ceil(config.requestsPerSecond))
  }

  /** Takes one request from `key`'s bucket; throws 429 with Retry-After when it is empty. */
  take(key: string): void {
    const now = this.now()
    this.sweep(now)
    const rate = this.config.requestsPerSecond / 1000
    const bucket = this.buckets.get(key) ?? { tokens: this.burst, updatedAt: now }
    bucket.tokens = Math.min(this.burst, bucket.tokens + (now - bucket.updatedAt) * rate)
    bucket.updatedAt = now
    this.buckets.set(key, bucket)
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1
      return
    }
    const retryAfter = Math.max(1, Math.ceil((1 - bucket.tokens) / rate / 1000))
    throw new HttpError({ status: 429, body: { error: "rate limit exceeded for this token", rule: "rate_limit" }, headers: { "Retry-After": String(retryAfter) } })
  }

  /** Forgets buckets that have refilled completely, so idle tokens cost no memory. */
  private sweep(now: number): void {
    if (now - this.lastSweep < 60_000) return
    this.lastSweep = now
    const full = (this.burst / this.config.requestsPerSecond) * 1000
    for (const [key, bucket] of this.buckets) if (now - bucket.updatedAt > full) this.buckets.delete(key)
  }
}
