/**
 * The tracing configuration (DESIGN §6): five keys from the broker's config, overridden by the
 * standard OpenTelemetry environment variables, resolved into one validated value. Pure: the
 * environment is a parameter, and a bad value fails with an error naming the key that holds it.
 */
import { Data } from "effect"

/** The five tracing keys as a config file or loader supplies them; every key is optional. */
export interface TracingConfigInput {
  /** Export spans to a collector. Default false: spans still get ids and headers still flow. */
  readonly tracingEnabled?: boolean | string
  /** The `service.name` spans are reported under. Default `codeq`; `OTEL_SERVICE_NAME` wins. */
  readonly tracingServiceName?: string
  /** The collector's OTLP gRPC endpoint, `host:port` or a URL. Default `localhost:4317`. */
  readonly tracingOtlpEndpoint?: string
  /** Plaintext gRPC instead of TLS. Default false (or true when the endpoint says `http://`). */
  readonly tracingOtlpInsecure?: boolean | string
  /** Share of new traces sampled, 0..1, as ParentBased(TraceIdRatioBased). Default 1.0. */
  readonly tracingSampleRatio?: number | string
}

/** Which B3 encodings outbound requests carry besides W3C trace context (`OTEL_PROPAGATORS`). */
export interface B3Emission {
  /** One `b3` header (`OTEL_PROPAGATORS` lists `b3`). */
  readonly single: boolean
  /** `X-B3-TraceId`, `X-B3-SpanId`, `X-B3-Sampled` headers (`OTEL_PROPAGATORS` lists `b3multi`). */
  readonly multi: boolean
}

/** The resolved tracing configuration the broker runs with. */
export interface TracingConfig {
  readonly enabled: boolean
  readonly serviceName: string
  /** `host:port` of the collector, whatever form the endpoint was given in. */
  readonly endpoint: string
  readonly insecure: boolean
  readonly sampleRatio: number
  readonly b3: B3Emission
  /** Names in `OTEL_PROPAGATORS` codeq does not implement; they are ignored (and warned about). */
  readonly unknownPropagators: ReadonlyArray<string>
}

/** A tracing setting that cannot be used; `key` names the config key or environment variable. */
export class TracingConfigError extends Data.TaggedError("TracingConfigError")<{
  readonly key: string
  readonly message: string
}> {}

export const TRACING_DEFAULTS = {
  enabled: false,
  serviceName: "codeq",
  endpoint: "localhost:4317",
  insecure: false,
  sampleRatio: 1
} as const

/** The port an OTLP gRPC endpoint without one is assumed to listen on. */
export const OTLP_GRPC_PORT = 4317

/** The environment variables the tracing configuration reads. */
export type TracingEnv = Readonly<Record<string, string | undefined>>

const KNOWN_PROPAGATORS = new Set(["tracecontext", "baggage", "b3", "b3multi", "none"])

const present = (value: string | undefined): string | undefined => {
  const trimmed = value?.trim()
  return trimmed === undefined || trimmed === "" ? undefined : trimmed
}

const parseBoolean = (key: string, value: boolean | string): boolean => {
  if (typeof value === "boolean") return value
  const normalised = value.trim().toLowerCase()
  if (normalised === "true" || normalised === "1") return true
  if (normalised === "false" || normalised === "0") return false
  throw new TracingConfigError({ key, message: `${key} must be true or false (got ${JSON.stringify(value)})` })
}

const parseRatio = (key: string, value: number | string): number => {
  const ratio = typeof value === "number" ? value : /^\s*[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?\s*$/i.test(value) ? Number(value) : Number.NaN
  if (!Number.isFinite(ratio) || ratio < 0 || ratio > 1) {
    throw new TracingConfigError({ key, message: `${key} must be a number between 0 and 1 (got ${JSON.stringify(value)})` })
  }
  return ratio
}

/** An endpoint reduced to what gRPC dials, plus the scheme it was written with, if any. */
export interface SanitisedEndpoint {
  /** `host:port`; IPv6 hosts keep their brackets; the port defaults to 4317. */
  readonly hostPort: string
  readonly scheme: string | undefined
}

const AUTHORITY = /^(\[[0-9a-f:.]+\]|[^\s:[\]/]+)(?::(\d{1,5}))?$/i

/**
 * Reduces `http://user:pw@collector:4317/v1/traces`, `collector:4317/` or `collector` to
 * `collector:4317`: gRPC dials an authority, never a path, and credentials have no place in it.
 */
export const sanitizeEndpoint = (raw: string, key = "tracingOtlpEndpoint"): SanitisedEndpoint => {
  const trimmed = raw.trim()
  const schemeMatch = /^([a-z][a-z0-9+.-]*):\/\//i.exec(trimmed)
  const scheme = schemeMatch?.[1]?.toLowerCase()
  const rest = schemeMatch === null ? trimmed : trimmed.slice(schemeMatch[0].length)
  const authority = (rest.split(/[/?#]/, 1)[0] ?? "").replace(/^.*@/, "")
  const match = AUTHORITY.exec(authority)
  const port = match?.[2] === undefined ? OTLP_GRPC_PORT : Number(match[2])
  if (match === null || port < 1 || port > 65535 || (scheme !== undefined && scheme !== "http" && scheme !== "https")) {
    throw new TracingConfigError({ key, message: `${key} must be host:port or an http(s) URL (got ${JSON.stringify(raw)})` })
  }
  return { hostPort: `${match[1]}:${port}`, scheme }
}

const parsePropagators = (value: string | undefined): { b3: B3Emission; unknown: ReadonlyArray<string> } => {
  const names = (value ?? "").split(",").map((name) => name.trim().toLowerCase()).filter((name) => name !== "")
  return {
    b3: { single: names.includes("b3"), multi: names.includes("b3multi") },
    unknown: names.filter((name) => !KNOWN_PROPAGATORS.has(name))
  }
}

/**
 * Resolves the tracing configuration. Precedence, highest first: the signal-specific
 * `OTEL_EXPORTER_OTLP_TRACES_*` variable, the general `OTEL_EXPORTER_OTLP_*` one (and
 * `OTEL_SERVICE_NAME`), the config key, the default. When insecure is set nowhere, an
 * `http://` endpoint means plaintext and anything else means TLS, as OpenTelemetry specifies.
 *
 * @throws TracingConfigError naming the key or variable whose value is unusable.
 */
export const resolveTracingConfig = (input: TracingConfigInput = {}, env: TracingEnv = process.env): TracingConfig => {
  const fromEnv = (...names: ReadonlyArray<string>): { key: string; value: string } | undefined => {
    for (const name of names) {
      const value = present(env[name])
      if (value !== undefined) return { key: name, value }
    }
    return undefined
  }

  const enabled = input.tracingEnabled === undefined ? TRACING_DEFAULTS.enabled : parseBoolean("tracingEnabled", input.tracingEnabled)
  const serviceName = fromEnv("OTEL_SERVICE_NAME")?.value ?? present(input.tracingServiceName) ?? TRACING_DEFAULTS.serviceName

  const endpointSource =
    fromEnv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT") ??
    (present(input.tracingOtlpEndpoint) === undefined ? undefined : { key: "tracingOtlpEndpoint", value: input.tracingOtlpEndpoint ?? "" })
  const endpoint = sanitizeEndpoint(endpointSource?.value ?? TRACING_DEFAULTS.endpoint, endpointSource?.key)

  const insecureEnv = fromEnv("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE")
  const insecure =
    insecureEnv !== undefined
      ? parseBoolean(insecureEnv.key, insecureEnv.value)
      : input.tracingOtlpInsecure !== undefined
        ? parseBoolean("tracingOtlpInsecure", input.tracingOtlpInsecure)
        : endpoint.scheme === "http" || TRACING_DEFAULTS.insecure

  const sampleRatio = input.tracingSampleRatio === undefined ? TRACING_DEFAULTS.sampleRatio : parseRatio("tracingSampleRatio", input.tracingSampleRatio)
  const propagators = parsePropagators(env.OTEL_PROPAGATORS)

  return { enabled, serviceName, endpoint: endpoint.hostPort, insecure, sampleRatio, b3: propagators.b3, unknownPropagators: propagators.unknown }
}
