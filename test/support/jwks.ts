/**
 * Auth and HTTP fixtures for the HTTP API tests: a real identity provider (RSA keys, a JWKS served
 * over HTTP on a free port, tokens signed with them, key rotation), the static development tokens
 * of two tenants, and a small fetch-based client for the API.
 */
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { SignJWT, exportJWK, generateKeyPair, type JWK, type JWTPayload, type CryptoKey } from "jose"
import type { StaticTokenConfig } from "../../src/http/index.js"

interface SigningKey {
  readonly kid: string
  readonly privateKey: CryptoKey
  readonly jwk: JWK
}

const newKey = async (kid: string): Promise<SigningKey> => {
  const { privateKey, publicKey } = await generateKeyPair("RS256", { extractable: true })
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: "RS256", use: "sig" } }
}

export interface TokenOptions {
  readonly issuer?: string
  readonly audience?: string | Array<string>
  /** Seconds from now; negative for an expired token. Default 600. */
  readonly expiresIn?: number
  /** Sign with a key the JWKS does not publish. */
  readonly foreignKey?: boolean
  /** Omit `exp`. */
  readonly noExpiry?: boolean
}

export interface TestIdentityProvider {
  readonly jwksUrl: string
  readonly issuer: string
  readonly audience: string
  /** Signs `claims` with the current key (or another one). */
  token(claims: JWTPayload, options?: TokenOptions): Promise<string>
  /** Publishes a new current key; the old one stays published unless `dropOld`. */
  rotate(options?: { dropOld?: boolean }): Promise<void>
  /** How many times the JWKS was fetched. */
  fetches(): number
  close(): Promise<void>
}

export const startIdentityProvider = async (): Promise<TestIdentityProvider> => {
  let keys = [await newKey("key-1")]
  const foreign = await newKey("key-1")
  let fetches = 0
  let generation = 1
  const server: Server = createServer((req, res) => {
    if (req.url !== "/.well-known/jwks.json") {
      res.writeHead(404).end()
      return
    }
    fetches++
    res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify({ keys: keys.map((k) => k.jwk) }))
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as AddressInfo
  const issuer = "https://idp.test.codeq"
  const audience = "codeq-api"
  const current = () => keys[keys.length - 1] as SigningKey
  return {
    jwksUrl: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    issuer,
    audience,
    token: async (claims, options = {}) => {
      const key = options.foreignKey === true ? foreign : current()
      const jwt = new SignJWT(claims)
        .setProtectedHeader({ alg: "RS256", kid: key.kid })
        .setIssuer(options.issuer ?? issuer)
        .setAudience(options.audience ?? audience)
        .setIssuedAt()
      if (options.noExpiry !== true) jwt.setExpirationTime(Math.floor(Date.now() / 1000) + (options.expiresIn ?? 600))
      return jwt.sign(key.privateKey)
    },
    rotate: async ({ dropOld = false } = {}) => {
      const next = await newKey(`key-${++generation}`)
      keys = dropOld ? [next] : [...keys, next]
    },
    fetches: () => fetches,
    close: () => new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

/** Static development tokens of two tenants, as a config and by role. */
export const STATIC_TOKENS = {
  acmeProducer: { token: "acme-producer-token", tenant: "acme", subject: "acme-producer", role: "producer" },
  acmeWorker: { token: "acme-worker-token", tenant: "acme", subject: "acme-worker-1", role: "worker" },
  acmeWorker2: { token: "acme-worker-2-token", tenant: "acme", subject: "acme-worker-2", role: "worker" },
  acmeAdmin: { token: "acme-admin-token", tenant: "acme", subject: "acme-admin", role: "admin" },
  /** A worker that may claim and heartbeat, but not submit results. */
  acmeNarrow: { token: "acme-narrow-token", tenant: "acme", subject: "acme-narrow", role: "worker", scopes: ["codeq:claim", "codeq:heartbeat"] },
  globexProducer: { token: "globex-producer-token", tenant: "globex", subject: "globex-producer", role: "producer" },
  globexWorker: { token: "globex-worker-token", tenant: "globex", subject: "globex-worker", role: "worker" },
  globexAdmin: { token: "globex-admin-token", tenant: "globex", subject: "globex-admin", role: "admin" }
} as const satisfies Record<string, StaticTokenConfig>

export interface ApiResponse {
  readonly status: number
  readonly headers: Headers
  /** Parsed JSON, or the raw text when the body is not JSON, or undefined when empty. */
  readonly body: unknown
  /** The body as an object (empty object when it is not one), for property assertions. */
  readonly json: Record<string, unknown>
}

export interface CallOptions {
  readonly token?: string
  /** An object is sent as JSON; a string or Buffer as is. */
  readonly body?: unknown
  readonly headers?: Record<string, string>
}

/** A small client for the API at `baseUrl`. */
export const apiClient = (baseUrl: string) => async (method: string, path: string, options: CallOptions = {}): Promise<ApiResponse> => {
  const raw = options.body
  const body = raw === undefined ? undefined : typeof raw === "string" || raw instanceof Buffer ? raw : JSON.stringify(raw)
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers: {
      ...(body !== undefined ? { "Content-Type": "application/json" } : {}),
      ...(options.token !== undefined ? { Authorization: `Bearer ${options.token}` } : {}),
      ...options.headers
    },
    ...(body !== undefined ? { body } : {})
  })
  const text = await response.text()
  let parsed: unknown = undefined
  if (text !== "") {
    try {
      parsed = JSON.parse(text)
    } catch {
      parsed = text
    }
  }
  const json = typeof parsed === "object" && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {}
  return { status: response.status, headers: response.headers, body: parsed, json }
}

export type ApiCall = ReturnType<typeof apiClient>
