/**
 * The broker process: connect, provision the streams, run the projections, and on interruption
 * stop them (in-flight events finish) before the connection drains. Stateless: any number of
 * brokers can run against one NATS deployment.
 */
import { Effect, Exit, Scope } from "effect"
import { connect, type NatsConnection } from "nats"
import { dispatcher } from "../projections/dispatcher.js"
import { deadLetters } from "../projections/deadLetters.js"
import { webhooks } from "../projections/webhooks.js"
import type { TracerProvider } from "@opentelemetry/api"
import { TaskRepository } from "./tasks/repository.js"
import { Telemetry } from "./tracing/spans.js"
import { deadLetterBucket, taskStateBucket } from "../streams/definitions.js"
import { taskState } from "../projections/taskState.js"
import { metricsProjection } from "../projections/metrics.js"
import { BrokerMetrics } from "./metrics/metrics.js"
import { PipelinedKv } from "./eventlog/kv.js"
import { runProjection, type RuntimeHooks } from "../projections/runtime.js"
import { streamDefinitions } from "../streams/definitions.js"
import { provisionStreams } from "../streams/provision.js"
import type { BrokerConfig } from "./config.js"
import { JetStreamEventLog } from "./eventlog/jetstream.js"
import { PipelinedPublisher } from "./eventlog/pipeline.js"

export interface BrokerOptions extends RuntimeHooks {
  /** Use this connection instead of opening one (left open on stop). */
  readonly connection?: NatsConnection
  /** Spans of the broker's own transitions (webhooks); default the global provider. */
  readonly tracerProvider?: TracerProvider
  /** Failed span exports so far, for `codeq_trace_export_failures_total`. */
  readonly traceExportFailures?: () => number
}

export interface RunningBroker {
  readonly nc: NatsConnection
  readonly metrics: BrokerMetrics
  /** Stops the projections (in-flight work finishes), then closes what the broker opened. */
  stop(): Promise<void>
}

const openConnection = (config: BrokerConfig, given: NatsConnection | undefined) =>
  given !== undefined
    ? Effect.succeed(given)
    : Effect.acquireRelease(
        Effect.tryPromise(() => connect({ servers: config.natsUrl.split(","), noAsyncTraces: true, maxReconnectAttempts: -1, name: "codeq-broker" })),
        (nc) => Effect.promise(() => nc.drain()).pipe(Effect.ignore)
      )

/** The broker as a scoped Effect: its projections run in fibers owned by the scope. */
export const brokerProgram = (config: BrokerConfig, options: BrokerOptions = {}) =>
  Effect.gen(function* () {
    const nc = yield* openConnection(config, options.connection)
    const jsm = yield* Effect.tryPromise(() => nc.jetstreamManager())
    yield* Effect.tryPromise(() => provisionStreams(jsm, streamDefinitions(config.naming, config.streams)))
    const claims = yield* Effect.acquireRelease(
      Effect.sync(() => new PipelinedPublisher(nc)),
      (publisher) => Effect.sync(() => publisher.close())
    )
    const log = yield* Effect.acquireRelease(
      Effect.sync(() => JetStreamEventLog.connect(nc, config.naming)),
      (eventLog) => Effect.sync(() => eventLog.close())
    )
    const dlq = yield* Effect.tryPromise(() => nc.jetstream().views.kv(deadLetterBucket(config.naming), { replicas: config.streams.replicas }))
    const metrics = new BrokerMetrics(nc, config.naming, dlq, options.traceExportFailures)
    const hooks = {
      ...options,
      onQuarantine: (event: { projection: string; seq: number; subject: string; reason: string }) => {
        metrics.quarantined.inc({ projection: event.projection })
        options.onQuarantine?.(event)
      }
    }
    // Creates the task-state bucket when missing; the projection writes it through the mux.
    yield* Effect.tryPromise(() => nc.jetstream().views.kv(taskStateBucket(config.naming), { replicas: config.streams.replicas }))
    const repo = new TaskRepository(log, new Telemetry(options.tracerProvider))
    const projections = [dispatcher(log, claims), deadLetters(log, dlq), taskState(new PipelinedKv(log.publisher, taskStateBucket(config.naming)), log), webhooks(repo, config.webhooks), metricsProjection(log, metrics)]
    // One fiber runs them all, so a shutdown interrupts every projection at once (each finishes
    // what it holds) rather than one after another.
    yield* Effect.forkScoped(
      Effect.all(
        projections.map((projection) => runProjection(nc, projection, { naming: config.naming, ...hooks }).pipe(Effect.orDie)),
        { concurrency: "unbounded", discard: true }
      )
    )
    return { nc, metrics }
  })

/** Starts a broker and returns a handle to stop it (for the CLI and tests). */
export const startBroker = async (config: BrokerConfig, options: BrokerOptions = {}): Promise<RunningBroker> => {
  const scope = Effect.runSync(Scope.make())
  const { nc, metrics } = await Effect.runPromise(brokerProgram(config, options).pipe(Scope.extend(scope)))
  return {
    nc,
    metrics,
    stop: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

