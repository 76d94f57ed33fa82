/**
 * Broker configuration from the environment, each key described (Effect Config). Defaults are
 * for a developer machine: the local NATS at 127.0.0.1:4222, one replica, unlimited retention.
 */
import { Config } from "effect"
import { DEFAULT_STREAM_SETTINGS, type Naming, type StreamSettings } from "../streams/definitions.js"

export interface BrokerConfig {
  readonly natsUrl: string
  readonly naming: Naming
  readonly streams: StreamSettings
}

export const BrokerConfig: Config.Config<BrokerConfig> = Config.all({
  natsUrl: Config.string("NATS_URL").pipe(Config.withDefault("nats://127.0.0.1:4222"), Config.withDescription("NATS server URL(s), comma separated")),
  naming: Config.all({
    streamPrefix: Config.string("CODEQ_STREAM_PREFIX").pipe(Config.withDefault("CODEQ"), Config.withDescription("prefix of the stream names")),
    subjectRoot: Config.string("CODEQ_SUBJECT_ROOT").pipe(Config.withDefault("codeq"), Config.withDescription("first token of every subject"))
  }),
  streams: Config.all({
    replicas: Config.integer("CODEQ_REPLICAS").pipe(Config.withDefault(DEFAULT_STREAM_SETTINGS.replicas), Config.withDescription("stream replicas (3 in production)")),
    maxAgeSeconds: Config.integer("CODEQ_EVENTS_MAX_AGE_SECONDS").pipe(Config.withDefault(DEFAULT_STREAM_SETTINGS.maxAgeSeconds), Config.withDescription("event retention by age; 0 keeps forever")),
    maxBytes: Config.integer("CODEQ_EVENTS_MAX_BYTES").pipe(Config.withDefault(DEFAULT_STREAM_SETTINGS.maxBytes), Config.withDescription("event retention by size; -1 is unlimited")),
    claimDedupSeconds: Config.integer("CODEQ_CLAIM_DEDUP_SECONDS").pipe(Config.withDefault(DEFAULT_STREAM_SETTINGS.claimDedupSeconds), Config.withDescription("dedup window of claim messages"))
  })
})
