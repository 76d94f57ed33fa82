/**
 * The HTTP API's configuration from the environment (Effect Config, each key described), for
 * `codeq serve`. Static tokens come as a JSON array validated with a Schema; the JWKS verifier is
 * on when `CODEQ_HTTP_JWKS_URL` is set and then needs an issuer and an audience. Secrets are
 * wrapped in `Redacted` while in the config, so printing it never shows a token.
 */
import { Config, ConfigError, Either, Option, ParseResult, Redacted, Schema } from "effect"
import type { AuthConfig, RateLimitConfig, StaticTokenConfig } from "./auth.js"
import type { HttpServerOptions } from "./server.js"

const StaticTokens = Schema.parseJson(
  Schema.Array(
    Schema.Struct({
      token: Schema.String.pipe(Schema.minLength(16)),
      tenant: Schema.String,
      subject: Schema.optional(Schema.String),
      role: Schema.optional(Schema.Literal("producer", "worker", "admin")),
      scopes: Schema.optional(Schema.Array(Schema.String)),
      eventTypes: Schema.optional(Schema.Array(Schema.String))
    })
  )
)

export interface HttpConfig {
  readonly port: number
  readonly host: string
  readonly bodyLimitBytes: number
  readonly staticTokens: Redacted.Redacted<ReadonlyArray<StaticTokenConfig>>
  readonly jwt: Option.Option<{ readonly jwksUrl: string; readonly issuer: string; readonly audience: string; readonly clockSkewSeconds: number }>
  readonly rateLimit: Option.Option<RateLimitConfig>
  /** Jaeger UI base URL: the operator page (/ui) links a task's trace to `<url>/trace/<traceId>`. */
  readonly uiJaegerUrl: Option.Option<string>
}

const staticTokens = Config.redacted("CODEQ_HTTP_STATIC_TOKENS").pipe(
  Config.withDefault(Redacted.make("[]")),
  Config.mapOrFail((raw) =>
    Either.mapBoth(Schema.decodeUnknownEither(StaticTokens, { onExcessProperty: "error" })(Redacted.value(raw)), {
      onLeft: (error) => {
        const [first] = ParseResult.ArrayFormatter.formatErrorSync(error)
        // The path only: the message would quote the value, and tokens are secrets.
        const where = first === undefined || first.path.length === 0 ? "" : ` (at ${first.path.join(".")})`
        return ConfigError.InvalidData(["CODEQ_HTTP_STATIC_TOKENS"], `must be a JSON array of {token (16+ chars), tenant, subject?, role?, scopes?, eventTypes?}${where}`)
      },
      onRight: (tokens) => Redacted.make<ReadonlyArray<StaticTokenConfig>>(tokens)
    })
  ),
  Config.withDescription("development bearer tokens: JSON array of {token, tenant, subject?, role: producer|worker|admin, scopes?, eventTypes?}")
)

type JwtSettings = { readonly jwksUrl: string; readonly issuer: string; readonly audience: string; readonly clockSkewSeconds: number }

const jwt = Config.all({
  jwksUrl: Config.option(Config.string("CODEQ_HTTP_JWKS_URL").pipe(Config.withDescription("JWKS URL of the identity provider; enables JWT bearer tokens"))),
  issuer: Config.option(Config.string("CODEQ_HTTP_JWT_ISSUER").pipe(Config.withDescription("accepted JWT issuer (iss); required with a JWKS URL"))),
  audience: Config.option(Config.string("CODEQ_HTTP_JWT_AUDIENCE").pipe(Config.withDescription("accepted JWT audience (aud); required with a JWKS URL"))),
  clockSkewSeconds: Config.integer("CODEQ_HTTP_JWT_CLOCK_SKEW_SECONDS").pipe(Config.withDefault(30), Config.withDescription("tolerated clock skew for exp/nbf"))
}).pipe(
  Config.mapOrFail(({ jwksUrl, issuer, audience, clockSkewSeconds }): Either.Either<Option.Option<JwtSettings>, ConfigError.ConfigError> => {
    if (Option.isNone(jwksUrl)) return Either.right(Option.none())
    if (Option.isNone(issuer) || Option.isNone(audience))
      return Either.left(ConfigError.MissingData([], "CODEQ_HTTP_JWKS_URL needs CODEQ_HTTP_JWT_ISSUER and CODEQ_HTTP_JWT_AUDIENCE"))
    return Either.right(Option.some({ jwksUrl: jwksUrl.value, issuer: issuer.value, audience: audience.value, clockSkewSeconds }))
  })
)

const rateLimit = Config.all({
  requestsPerSecond: Config.number("CODEQ_HTTP_RATE_LIMIT_RPS").pipe(
    Config.validate({ message: "must be a number from 0 to 1000000", validation: (n) => Number.isFinite(n) && n >= 0 && n <= 1_000_000 }),
    Config.withDefault(0), Config.withDescription("requests per second per token; 0 turns the limit off")),
  burst: Config.option(Config.integer("CODEQ_HTTP_RATE_LIMIT_BURST").pipe(Config.validate({ message: "must be an integer from 1 to 1000000", validation: (n) => n >= 1 && n <= 1_000_000 }), Config.withDescription("burst per token; default one second's worth")))
}).pipe(
  Config.map(({ requestsPerSecond, burst }) =>
    requestsPerSecond > 0 ? Option.some<RateLimitConfig>({ requestsPerSecond, ...Option.match(burst, { onNone: () => ({}), onSome: (b) => ({ burst: b }) }) }) : Option.none()
  )
)

/** An absolute http(s) URL: the page puts it in a link's href, so no other scheme gets there. */
const isHttpUrl = (value: string): boolean => URL.canParse(value) && ["http:", "https:"].includes(new URL(value).protocol)

const uiJaegerUrl = Config.option(
  Config.string("CODEQ_UI_JAEGER_URL").pipe(
    Config.validate({ message: "must be an http(s) URL", validation: isHttpUrl }),
    Config.withDescription("Jaeger UI base URL; the operator page links each trace to <url>/trace/<traceId>")
  )
)

export const HttpConfig: Config.Config<HttpConfig> = Config.all({
  port: Config.port("CODEQ_HTTP_PORT").pipe(Config.withDefault(8080), Config.withDescription("HTTP API port")),
  host: Config.string("CODEQ_HTTP_HOST").pipe(Config.withDefault("0.0.0.0"), Config.withDescription("HTTP API bind address")),
  bodyLimitBytes: Config.integer("CODEQ_HTTP_BODY_LIMIT_BYTES").pipe(Config.validate({ message: "must be an integer from 1024 to 67108864", validation: (n) => n >= 1024 && n <= 64 * 1024 * 1024 }), Config.withDefault(1024 * 1024), Config.withDescription("largest request body accepted (413 beyond)")),
  staticTokens,
  jwt,
  rateLimit,
  uiJaegerUrl
})

/** Server options from the config, for `startHttpServer({ ...httpServerOptions(config), client })`. */
export const httpServerOptions = (config: HttpConfig): Omit<HttpServerOptions, "client"> => {
  const auth: AuthConfig = {
    staticTokens: Redacted.value(config.staticTokens),
    ...Option.match(config.jwt, { onNone: () => ({}), onSome: (jwtConfig) => ({ jwt: jwtConfig }) })
  }
  return {
    auth,
    port: config.port,
    host: config.host,
    bodyLimitBytes: config.bodyLimitBytes,
    ...Option.match(config.rateLimit, { onNone: () => ({}), onSome: (limit) => ({ rateLimit: limit }) }),
    ...Option.match(config.uiJaegerUrl, { onNone: () => ({}), onSome: (jaegerUrl) => ({ ui: { jaegerUrl } }) })
  }
}
