/**
 * JWT bearer tokens verified against a JWKS URL with `jose`: signature, issuer, audience, expiry
 * (required) and not-before, with a clock skew. Keys are cached and the set is fetched again when
 * a token names a key id the cache lacks, so an identity provider can rotate keys without a
 * restart. Each refusal says what was wrong; an unreachable JWKS is a 503, not the caller's fault.
 */
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from "jose"
import { unauthorized, unavailable, type HttpError } from "./errors.js"

export interface JwtConfig {
  /** Where the identity provider publishes its signing keys (JSON Web Key Set). */
  readonly jwksUrl: string
  /** Accepted `iss` value(s). */
  readonly issuer: string | ReadonlyArray<string>
  /** Accepted `aud` value(s): the token must name one. */
  readonly audience: string | ReadonlyArray<string>
  /** Tolerated clock difference for `exp`, `nbf` and `iat`, in seconds. Default 30. */
  readonly clockSkewSeconds?: number
  /** Accepted signature algorithms. Default: RS*, PS*, ES* and EdDSA (never HS* or none). */
  readonly algorithms?: ReadonlyArray<string>
  /** Keys are fetched again after this long even when every kid is known. Default 10 min. */
  readonly cacheMaxAgeMs?: number
  /** No refetch for an unknown kid within this long of the last fetch. Default 30 s. */
  readonly cooldownMs?: number
  /** Deadline of a JWKS fetch. Default 5 s. */
  readonly timeoutMs?: number
}

const DEFAULT_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]

const codeOf = (error: unknown): string | undefined =>
  typeof error === "object" && error !== null && "code" in error && typeof error.code === "string" ? error.code : undefined

const claimOf = (error: unknown): string | undefined =>
  typeof error === "object" && error !== null && "claim" in error && typeof error.claim === "string" ? error.claim : undefined

const CLAIM_MESSAGES: Readonly<Record<string, string>> = {
  aud: "the token's audience (aud) is not accepted here",
  iss: "the token's issuer (iss) is not accepted here",
  nbf: "the token is not valid yet (nbf)",
  iat: "the token's issue time (iat) is invalid",
  exp: "the token has no valid expiry (exp)"
}

/** Maps a jose failure to the response it deserves, naming the problem. */
const refusal = (error: unknown): HttpError => {
  switch (codeOf(error)) {
    case "ERR_JWT_EXPIRED":
      return unauthorized("the token has expired")
    case "ERR_JWT_CLAIM_VALIDATION_FAILED":
      return unauthorized(CLAIM_MESSAGES[claimOf(error) ?? ""] ?? `the token's ${claimOf(error) ?? "claims"} failed validation`)
    case "ERR_JWS_SIGNATURE_VERIFICATION_FAILED":
      return unauthorized("the token's signature is invalid")
    case "ERR_JWKS_NO_MATCHING_KEY":
      return unauthorized("no key of the JWKS matches the token's key id (kid)")
    case "ERR_JWKS_MULTIPLE_MATCHING_KEYS":
      return unauthorized("the token's key id (kid) matches several keys of the JWKS")
    case "ERR_JOSE_ALG_NOT_ALLOWED":
    case "ERR_JOSE_NOT_SUPPORTED":
      return unauthorized("the token's signature algorithm is not accepted")
    case "ERR_JWS_INVALID":
    case "ERR_JWT_INVALID":
      return unauthorized("the token is not a well-formed JWT")
    case "ERR_JWKS_TIMEOUT":
    case "ERR_JWKS_INVALID":
    case "ERR_JOSE_GENERIC":
      return unavailable("the identity provider's key set (JWKS) cannot be fetched", error)
    default:
      // fetch() failures (connection refused, DNS) surface as plain errors.
      return error instanceof TypeError ? unavailable("the identity provider's key set (JWKS) cannot be fetched", error) : unauthorized("the token is invalid")
  }
}

export class JwtVerifier {
  private readonly keys: ReturnType<typeof createRemoteJWKSet>

  constructor(private readonly config: JwtConfig) {
    this.keys = createRemoteJWKSet(new URL(config.jwksUrl), {
      ...(config.cacheMaxAgeMs !== undefined ? { cacheMaxAge: config.cacheMaxAgeMs } : {}),
      ...(config.cooldownMs !== undefined ? { cooldownDuration: config.cooldownMs } : {}),
      ...(config.timeoutMs !== undefined ? { timeoutDuration: config.timeoutMs } : {})
    })
  }

  /** The verified claims; throws HttpError 401 (bad token) or 503 (JWKS unreachable). */
  async verify(token: string): Promise<JWTPayload> {
    try {
      const { payload } = await jwtVerify(token, this.keys, {
        issuer: typeof this.config.issuer === "string" ? this.config.issuer : [...this.config.issuer],
        audience: typeof this.config.audience === "string" ? this.config.audience : [...this.config.audience],
        clockTolerance: this.config.clockSkewSeconds ?? 30,
        algorithms: [...(this.config.algorithms ?? DEFAULT_ALGORITHMS)],
        requiredClaims: ["exp"]
      })
      return payload
    } catch (error) {
      throw refusal(error)
    }
  }
}

/** A JWS compact serialisation has three base64url parts. */
export const looksLikeJwt = (token: string): boolean => /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token)
