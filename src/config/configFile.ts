/**
 * Configuration from a YAML file (`CODEQ_CONFIG`) with codeQ's key names, under the environment:
 * every key has one environment variable, and a variable that is set wins over the file. The
 * registry below is the one list of keys — the loader, `codeq config print` and a test that holds
 * the README's configuration table to it all read it. Values are validated by the Effect Configs
 * that read them (src/config/config.ts, src/http/config.ts); a bad one stops the start with one line
 * naming the key, the value and the rule.
 */
import { readFile } from "node:fs/promises"
import { Cause, ConfigError, ConfigProvider, Effect, Either, Exit, Option, type Config } from "effect"
import { parse as parseYaml } from "yaml"

export interface ConfigKey {
  /** The file's key (codeQ's name). */
  readonly key: string
  readonly env: string
  /** Masked by `config print` and in error messages. */
  readonly secret?: boolean
}

export const CONFIG_KEYS: ReadonlyArray<ConfigKey> = [
  { key: "natsUrl", env: "NATS_URL" },
  { key: "streamPrefix", env: "CODEQ_STREAM_PREFIX" },
  { key: "subjectRoot", env: "CODEQ_SUBJECT_ROOT" },
  { key: "replicas", env: "CODEQ_REPLICAS" },
  { key: "eventsMaxAgeSeconds", env: "CODEQ_EVENTS_MAX_AGE_SECONDS" },
  { key: "eventsMaxBytes", env: "CODEQ_EVENTS_MAX_BYTES" },
  { key: "claimDedupSeconds", env: "CODEQ_CLAIM_DEDUP_SECONDS" },
  { key: "webhookHmacSecret", env: "CODEQ_WEBHOOK_HMAC_SECRET", secret: true },
  { key: "webhookMaxAttempts", env: "CODEQ_WEBHOOK_MAX_ATTEMPTS" },
  { key: "webhookBaseDelaySeconds", env: "CODEQ_WEBHOOK_BASE_DELAY_SECONDS" },
  { key: "webhookMaxDelaySeconds", env: "CODEQ_WEBHOOK_MAX_DELAY_SECONDS" },
  { key: "webhookConnectTimeoutMs", env: "CODEQ_WEBHOOK_CONNECT_TIMEOUT_MS" },
  { key: "webhookResponseTimeoutMs", env: "CODEQ_WEBHOOK_RESPONSE_TIMEOUT_MS" },
  { key: "webhookAllowPrivateNetworks", env: "CODEQ_WEBHOOK_ALLOW_PRIVATE_NETWORKS" },
  { key: "tracingEnabled", env: "CODEQ_TRACING_ENABLED" },
  { key: "tracingServiceName", env: "CODEQ_TRACING_SERVICE_NAME" },
  { key: "tracingOtlpEndpoint", env: "CODEQ_TRACING_OTLP_ENDPOINT" },
  { key: "tracingOtlpInsecure", env: "CODEQ_TRACING_OTLP_INSECURE" },
  { key: "tracingSampleRatio", env: "CODEQ_TRACING_SAMPLE_RATIO" },
  { key: "httpPort", env: "CODEQ_HTTP_PORT" },
  { key: "httpHost", env: "CODEQ_HTTP_HOST" },
  { key: "httpBodyLimitBytes", env: "CODEQ_HTTP_BODY_LIMIT_BYTES" },
  { key: "httpStaticTokens", env: "CODEQ_HTTP_STATIC_TOKENS", secret: true },
  { key: "httpJwksUrl", env: "CODEQ_HTTP_JWKS_URL" },
  { key: "httpJwtIssuer", env: "CODEQ_HTTP_JWT_ISSUER" },
  { key: "httpJwtAudience", env: "CODEQ_HTTP_JWT_AUDIENCE" },
  { key: "httpJwtClockSkewSeconds", env: "CODEQ_HTTP_JWT_CLOCK_SKEW_SECONDS" },
  { key: "httpRateLimitRps", env: "CODEQ_HTTP_RATE_LIMIT_RPS" },
  { key: "httpRateLimitBurst", env: "CODEQ_HTTP_RATE_LIMIT_BURST" },
  { key: "uiJaegerUrl", env: "CODEQ_UI_JAEGER_URL" },
  { key: "heapGrowthPercent", env: "CODEQ_HEAP_GROWTH_PERCENT" }
]

const byKey = new Map(CONFIG_KEYS.map((k) => [k.key, k]))
const byEnv = new Map(CONFIG_KEYS.map((k) => [k.env, k]))

/** A configuration that cannot be used; `message` is the one line to print. */
export class ConfigurationError extends Error {
  override readonly name = "ConfigurationError"
}

/** A file value as the environment would spell it: scalars as text, lists and maps as JSON. */
const asText = (value: unknown): string => (typeof value === "string" ? value : typeof value === "object" && value !== null ? JSON.stringify(value) : String(value))

/** The variables a config file sets (`CODEQ_CONFIG`), validated for unknown keys. */
export const readConfigFile = async (path: string): Promise<ReadonlyMap<string, string>> => {
  let text: string
  try {
    text = await readFile(path, "utf8")
  } catch (error) {
    throw new ConfigurationError(`config file ${path} cannot be read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`)
  }
  let doc: unknown
  try {
    doc = parseYaml(text)
  } catch (error) {
    throw new ConfigurationError(`config file ${path} is not valid YAML: ${String(error instanceof Error ? error.message : error).split("\n")[0]}`)
  }
  if (doc === null || doc === undefined) return new Map()
  if (typeof doc !== "object" || Array.isArray(doc)) throw new ConfigurationError(`config file ${path} must be a mapping of keys to values`)
  const out = new Map<string, string>()
  for (const [key, value] of Object.entries(doc)) {
    const known = byKey.get(key)
    if (known === undefined) throw new ConfigurationError(`config file ${path}: unknown key ${key} (known: ${CONFIG_KEYS.map((k) => k.key).join(", ")})`)
    if (value !== null && value !== undefined) out.set(known.env, asText(value))
  }
  return out
}

/**
 * The variables in effect: the file's (when `CODEQ_CONFIG` names one), then the environment's on
 * top. Only the registry's variables and the ones Effect Config reads are taken.
 */
export const effectiveVariables = async (env: NodeJS.ProcessEnv = process.env): Promise<ReadonlyMap<string, string>> => {
  const file = env.CODEQ_CONFIG === undefined || env.CODEQ_CONFIG === "" ? new Map<string, string>() : await readConfigFile(env.CODEQ_CONFIG)
  const merged = new Map(file)
  for (const { env: name } of CONFIG_KEYS) {
    const value = env[name]
    if (value !== undefined) merged.set(name, value)
  }
  return merged
}

const mask = (name: string, value: string): string => (byEnv.get(name)?.secret === true ? "[secret]" : value)

/** One line for a config error: the key (file name and variable), the value given, the rule. */
export const describeConfigError = (error: ConfigError.ConfigError, variables: ReadonlyMap<string, string>): string => {
  const first = (e: ConfigError.ConfigError): { path: ReadonlyArray<string>; message: string } =>
    e._op === "And" || e._op === "Or" ? first(e.left) : e._op === "InvalidData" || e._op === "MissingData" || e._op === "SourceUnavailable" || e._op === "Unsupported" ? { path: e.path, message: e.message } : { path: [], message: String(e) }
  const { path, message } = first(error)
  const name = path[path.length - 1] ?? ""
  const known = byEnv.get(name)
  const value = variables.get(name)
  const where = known === undefined ? name || "configuration" : `${known.key} (${known.env})`
  return `config: ${where}${value === undefined ? "" : ` = ${JSON.stringify(mask(name, value))}`}: ${message.split("\n")[0]}`
}

/** Reads `config` from the effective variables; a bad value throws ConfigurationError with one line. */
export const loadConfig = async <A>(config: Config.Config<A>, variables: ReadonlyMap<string, string>): Promise<A> => {
  const provider = ConfigProvider.fromMap(new Map(variables))
  const exit = await Effect.runPromiseExit(Effect.withConfigProvider(config, provider))
  if (Exit.isSuccess(exit)) return exit.value
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure) && ConfigError.isConfigError(failure.value)) throw new ConfigurationError(describeConfigError(failure.value, variables))
  throw new ConfigurationError(`config: ${Cause.pretty(exit.cause).split("\n")[0]}`)
}

/** The effective configuration as `key: value` lines, secrets masked, for `codeq config print`. */
export const printableConfig = (variables: ReadonlyMap<string, string>): ReadonlyArray<{ key: string; env: string; value: string | undefined }> =>
  CONFIG_KEYS.map(({ key, env }) => {
    const value = variables.get(env)
    return { key, env, value: value === undefined ? undefined : mask(env, value) }
  })

/** True when `value` parses as the configuration of `config` (tests). */
export const isValid = async <A>(config: Config.Config<A>, variables: ReadonlyMap<string, string>): Promise<boolean> =>
  Either.isRight(await Effect.runPromise(Effect.either(Effect.withConfigProvider(config, ConfigProvider.fromMap(new Map(variables))))))
