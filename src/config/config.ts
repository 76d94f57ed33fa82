/**
 * Broker configuration from the environment, each key described (Effect Config). Defaults are
 * for a developer machine: the local NATS at 127.0.0.1:4222, one replica, unlimited retention.
 */
import { Config, Redacted } from "effect"
import { DEFAULT_STREAM_SETTINGS, type Naming, type StreamSettings } from "../../streams/definitions.js"
import { DEFAULT_WEBHOOK_SETTINGS, type WebhookSettings } from "../webhooks/deliver.js"
import type { TracingConfigInput } from "../tracing/config.js"

export interface BrokerConfig {
  readonly natsUrl: string
  readonly naming: Naming
  readonly streams: StreamSettings
  readonly webhooks: WebhookSettings
  /** codeQ's five tracing keys; OTEL_* variables win over them (see src/tracing/config.ts). */
  readonly tracing: TracingConfigInput
  /**
   * How far V8 lets `codeq serve`'s heap grow past what its last full collection kept, in percent;
   * 0 leaves V8's own heuristic. Applied by `codeq serve` only (src/cli/heap.ts): an application
   * that embeds the broker keeps its own process settings. Default `DEFAULT_HEAP_GROWTH_PERCENT`.
   */
  readonly heapGrowthPercent?: number
}

/** The default of `heapGrowthPercent`: see src/cli/heap.ts for what it costs and saves. */
export const DEFAULT_HEAP_GROWTH_PERCENT = 50
/** The largest `heapGrowthPercent` (V8 then collects at 11× what it kept). */
export const MAX_HEAP_GROWTH_PERCENT = 1_000

/** A number within [min, max], or a config error naming the rule. */
const within = (min: number, max: number) => (config: Config.Config<number>) =>
  config.pipe(Config.validate({ message: `must be a number from ${min} to ${max}`, validation: (n) => Number.isFinite(n) && n >= min && n <= max }))

const optional = <A>(config: Config.Config<A>) => Config.option(config).pipe(Config.map((value) => (value._tag === "Some" ? value.value : undefined)))

export const BrokerConfig: Config.Config<BrokerConfig> = Config.all({
  natsUrl: Config.string("NATS_URL").pipe(Config.withDefault("nats://127.0.0.1:4222"), Config.withDescription("NATS server URL(s), comma separated")),
  naming: Config.all({
    streamPrefix: Config.string("CODEQ_STREAM_PREFIX").pipe(Config.withDefault("CODEQ"), Config.withDescription("prefix of the stream names")),
    subjectRoot: Config.string("CODEQ_SUBJECT_ROOT").pipe(Config.withDefault("codeq"), Config.withDescription("first token of every subject"))
  }),
  streams: Config.all({
    replicas: within(1, 5)(Config.integer("CODEQ_REPLICAS")).pipe(Config.withDefault(DEFAULT_STREAM_SETTINGS.replicas), Config.withDescription("stream replicas (3 in production)")),
    maxAgeSeconds: within(0, 100 * 365 * 86_400)(Config.integer("CODEQ_EVENTS_MAX_AGE_SECONDS")).pipe(Config.withDefault(DEFAULT_STREAM_SETTINGS.maxAgeSeconds), Config.withDescription("event retention by age; 0 keeps forever")),
    maxBytes: within(-1, Number.MAX_SAFE_INTEGER)(Config.integer("CODEQ_EVENTS_MAX_BYTES")).pipe(Config.withDefault(DEFAULT_STREAM_SETTINGS.maxBytes), Config.withDescription("event retention by size; -1 is unlimited")),
    claimDedupSeconds: within(1, 86_400)(Config.integer("CODEQ_CLAIM_DEDUP_SECONDS")).pipe(Config.withDefault(DEFAULT_STREAM_SETTINGS.claimDedupSeconds), Config.withDescription("dedup window of claim messages"))
  }),
  webhooks: Config.all({
    hmacSecret: Config.option(Config.redacted("CODEQ_WEBHOOK_HMAC_SECRET")).pipe(
      Config.map((secret) => (secret._tag === "Some" ? Redacted.value(secret.value) : undefined)),
      Config.withDescription("HMAC-SHA256 key for X-CodeQ-Signature (webhookHmacSecret); unsigned when unset")
    ),
    maxAttempts: within(1, 1_000)(Config.integer("CODEQ_WEBHOOK_MAX_ATTEMPTS")).pipe(Config.withDefault(DEFAULT_WEBHOOK_SETTINGS.maxAttempts), Config.withDescription("webhook attempts before giving up")),
    baseDelaySeconds: within(0, 3_600)(Config.number("CODEQ_WEBHOOK_BASE_DELAY_SECONDS")).pipe(Config.withDefault(DEFAULT_WEBHOOK_SETTINGS.baseDelaySeconds), Config.withDescription("first webhook retry delay")),
    maxDelaySeconds: within(0, 86_400)(Config.number("CODEQ_WEBHOOK_MAX_DELAY_SECONDS")).pipe(Config.withDefault(DEFAULT_WEBHOOK_SETTINGS.maxDelaySeconds), Config.withDescription("longest webhook retry delay")),
    connectTimeoutMs: within(100, 120_000)(Config.integer("CODEQ_WEBHOOK_CONNECT_TIMEOUT_MS")).pipe(Config.withDefault(DEFAULT_WEBHOOK_SETTINGS.connectTimeoutMs), Config.withDescription("webhook connect timeout")),
    responseTimeoutMs: within(100, 600_000)(Config.integer("CODEQ_WEBHOOK_RESPONSE_TIMEOUT_MS")).pipe(Config.withDefault(DEFAULT_WEBHOOK_SETTINGS.responseTimeoutMs), Config.withDescription("webhook response timeout")),
    allowPrivateNetworks: Config.boolean("CODEQ_WEBHOOK_ALLOW_PRIVATE_NETWORKS").pipe(Config.withDefault(false), Config.withDescription("allow private, loopback and link-local webhook targets (webhookAllowPrivateNetworks)"))
  }),
  tracing: Config.all({
    tracingEnabled: optional(Config.boolean("CODEQ_TRACING_ENABLED").pipe(Config.withDescription("export spans over OTLP gRPC (tracingEnabled, default false)"))),
    tracingServiceName: optional(Config.string("CODEQ_TRACING_SERVICE_NAME").pipe(Config.withDescription("service.name (tracingServiceName, default codeq; OTEL_SERVICE_NAME wins)"))),
    tracingOtlpEndpoint: optional(Config.string("CODEQ_TRACING_OTLP_ENDPOINT").pipe(Config.withDescription("collector host:port or URL (tracingOtlpEndpoint, default localhost:4317; OTEL_EXPORTER_OTLP_ENDPOINT wins)"))),
    tracingOtlpInsecure: optional(Config.boolean("CODEQ_TRACING_OTLP_INSECURE").pipe(Config.withDescription("plaintext gRPC (tracingOtlpInsecure, default false; OTEL_EXPORTER_OTLP_INSECURE wins)"))),
    tracingSampleRatio: optional(Config.number("CODEQ_TRACING_SAMPLE_RATIO").pipe(Config.withDescription("head sampling ratio 0..1 (tracingSampleRatio, default 1.0)")))
  }).pipe(Config.map((keys) => Object.fromEntries(Object.entries(keys).filter(([, value]) => value !== undefined)) as TracingConfigInput)),
  heapGrowthPercent: within(0, MAX_HEAP_GROWTH_PERCENT)(Config.integer("CODEQ_HEAP_GROWTH_PERCENT")).pipe(
    Config.withDefault(DEFAULT_HEAP_GROWTH_PERCENT),
    Config.withDescription("heap growth past the live data before a full collection, in percent (serve only; 0 = V8's own)")
  )
})
