/**
 * The broker process: connect, provision the streams, run the projections (one broker at a time
 * folds the log; the others stand by) and the webhook deliveries (every broker takes its share),
 * and on interruption stop them (in-flight work finishes) before the connection drains. Stateless:
 * any number of brokers can run against one NATS deployment.
 */
import { hostname } from "node:os"
import { randomUUID } from "node:crypto"
import { Cause, Data, Effect, Exit, Layer, Scope } from "effect"
import type { TracerProvider } from "@opentelemetry/api"
import { dispatcher } from "../projections/dispatcher.js"
import { DeadLetterUpkeep, deadLetters } from "../projections/deadLetters.js"
import { OpenTaskUpkeep, type OpenTaskIndex } from "../projections/openTasks.js"
import { metricsProjection } from "../projections/metrics.js"
import { startProjections, type RunningProjections } from "../projections/run.js"
import type { RuntimeHooks } from "../projections/runtime.js"
import { runWebhookDeliveries, webhookOutbox } from "../projections/webhooks.js"
import { deadLetterBucket, openTaskBucket, projectionsBucket, streamDefinitions, taskStateBucket } from "../streams/definitions.js"
import { provisionStreams } from "./eventlog/provision.js"
import { BrokerMetrics } from "./metrics/metrics.js"
import { PipelinedKv, openBucket } from "./eventlog/kv.js"
import type { BrokerConfig } from "./config/config.js"
import { PipelinedPublisher } from "./eventlog/pipeline.js"
import { DEFAULT_LIMITS, maxPayloadShortfall, neededMaxPayload } from "./tasks/limits.js"
import { checkJetStream, type Connection, type ConnectionWatch } from "./eventlog/connection.js"
import { Log, Nats, Repository, Settings, jetStreamLogLayer, natsLayer, repositoryLayer, settingsLayer, tracingLayer } from "./services/services.js"
import { log, type Logger } from "./log/log.js"
import { ClaimReconciler } from "./eventlog/claims/reconcile.js"

/** The broker could not start: which step, and why (the message is one line for people). */
export class BrokerStartError extends Data.TaggedError("BrokerStartError")<{ readonly step: string; readonly cause: unknown }> {
  override get message() {
    const cause = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return `cannot ${this.step}: ${cause.split("\n")[0]}`
  }
}

const attempt = <A>(step: string, run: () => Promise<A>) => Effect.tryPromise({ try: run, catch: (cause) => new BrokerStartError({ step, cause }) })

export interface BrokerOptions extends RuntimeHooks {
  /** Use this connection instead of opening one (left open on stop). */
  readonly connection?: Connection
  /** With `connection`: the watch already following it (its changes are logged by whoever made it). */
  readonly connectionWatch?: ConnectionWatch
  /** Spans of the broker's own transitions (webhooks); default the global provider. */
  readonly tracerProvider?: TracerProvider
  /** Failed span exports so far, for `codeq_trace_export_failures_total`. */
  readonly traceExportFailures?: () => number
  /** Time to live of the projections lease (a dead leader is replaced after it). Default 15 s. */
  readonly leaseTtlMs?: number
  /** The broker's log: NATS disconnects (warn) and reconnects (info), once each. Default the process logger. */
  readonly logger?: Logger
}

export interface RunningBroker {
  readonly nc: Connection
  readonly metrics: BrokerMetrics
  readonly projections: RunningProjections
  /** Stops the projections (in-flight work finishes), then closes what the broker opened. */
  stop(): Promise<void>
}

const rootLogger = log

/**
 * What a broker runs on: its configuration, the connection (opened, or the one given, left open),
 * the JetStream event log on it, telemetry and the task repository.
 */
export const brokerLayer = (config: BrokerConfig, options: Pick<BrokerOptions, "connection" | "connectionWatch" | "tracerProvider" | "logger"> = {}) => {
  const nats = natsLayer({
    servers: config.natsUrl.split(","),
    name: "codeq-broker",
    log: options.logger ?? log.child({ component: "broker" }),
    ...(options.connection !== undefined ? { given: options.connection } : {}),
    ...(options.connection !== undefined && options.connectionWatch !== undefined ? { watch: options.connectionWatch } : {})
  }).pipe(Layer.mapError((failed) => new BrokerStartError({ step: `connect to NATS at ${config.natsUrl}`, cause: failed.cause })))
  const logs = jetStreamLogLayer(config.naming).pipe(Layer.provideMerge(nats))
  return repositoryLayer().pipe(Layer.provideMerge(Layer.merge(logs, tracingLayer(options.tracerProvider))), Layer.merge(settingsLayer(config)))
}

/** The broker as a scoped Effect on its services: what it runs is stopped when the scope closes. */
export const brokerProgram = (options: BrokerOptions = {}) =>
  Effect.gen(function* () {
    const config = yield* Settings
    const { nc, watch } = yield* Nats
    const connected = () => watch.connected
    yield* attempt("reach JetStream (is the server started with -js?)", () => checkJetStream(nc))
    yield* attempt("provision the streams", () => provisionStreams(nc, streamDefinitions(config.naming, config.streams)))
    // Claims, webhook jobs and read-model writes: pipelined on one inbox of their own.
    const publisher = yield* Effect.acquireRelease(
      Effect.sync(() => new PipelinedPublisher(nc)),
      (p) => Effect.sync(() => p.close())
    )
    const log = yield* Log
    const logger = options.logger ?? rootLogger
    const shortfall = maxPayloadShortfall(nc.info?.max_payload, DEFAULT_LIMITS)
    if (shortfall !== undefined) logger.warn({ max_payload: nc.info?.max_payload, needed: neededMaxPayload(DEFAULT_LIMITS) }, shortfall)
    const kv = (bucket: string) => attempt(`open the key-value bucket ${bucket}`, () => openBucket(nc, bucket, config.streams.replicas))
    const dlq = yield* kv(deadLetterBucket(config.naming))
    const leases = yield* kv(projectionsBucket(config.naming))
    const documents = yield* kv(taskStateBucket(config.naming))
    const openTaskWriter = new PipelinedKv(publisher, openTaskBucket(config.naming))
    const openTasks: OpenTaskIndex = { name: openTaskBucket(config.naming), bucket: yield* kv(openTaskBucket(config.naming)), writer: openTaskWriter, documents }
    // The metrics read the projections' positions, and the projections count into the metrics.
    const started: { projections?: RunningProjections } = {}
    const metrics = new BrokerMetrics(nc, config.naming, dlq, options.traceExportFailures, () => started.projections?.positions() ?? Promise.resolve(new Map()))
    const repo = yield* Repository
    const running = yield* Effect.acquireRelease(
      Effect.sync(() =>
        startProjections({
          nc,
          naming: config.naming,
          log,
          leases,
          taskState: new PipelinedKv(publisher, taskStateBucket(config.naming), (key, bytes, cause) =>
            logger.warn(
              { key, bytes, max_payload: nc.info?.max_payload, error: cause instanceof Error ? cause.message : String(cause) },
              "task document not written: the server refused it (over its max_payload); the read model lacks this state of the task until its next write"
            )
          ),
          openTasks,
          sinks: ({ replayHorizon }) => [
            dispatcher(publisher, config.naming, config.streams.replicas),
            webhookOutbox(publisher, config.naming, config.streams.replicas, replayHorizon),
            deadLetters(dlq),
            metricsProjection(metrics)
          ],
          holder: `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`,
          connected,
          ...(options.leaseTtlMs !== undefined ? { leaseTtlMs: options.leaseTtlMs } : {}),
          onQuarantine: (event) => {
            metrics.quarantined.inc({ projection: event.projection })
            options.onQuarantine?.(event)
          },
          ...(options.onHandled !== undefined ? { onHandled: options.onHandled } : {})
        })
      ),
      (p) => Effect.promise(() => p.stop())
    )
    started.projections = running
    // Claim messages a server crash left below a consumer's ack floor (see eventlog/claims/reconcile.ts).
    yield* Effect.acquireRelease(
      Effect.sync(() => new ClaimReconciler(nc, config.naming, { connected, log: logger.child({ component: "claims" }) })),
      (reconciler) => Effect.promise(() => reconciler.stop())
    )
    // The dead-letter index's old delete markers (see projections/deadLetters.ts).
    yield* Effect.acquireRelease(
      Effect.sync(
        () =>
          new DeadLetterUpkeep(nc, dlq, config.naming, {
            leading: () => started.projections?.leading === true,
            connected,
            log: logger.child({ component: "dead-letters" })
          })
      ),
      (upkeep) => Effect.promise(() => upkeep.stop())
    )
    // The open-task index's delete markers (see eventlog/openTasks.ts).
    yield* Effect.acquireRelease(
      Effect.sync(
        () =>
          new OpenTaskUpkeep(nc, openTasks, {
            leading: () => started.projections?.leading === true,
            removed: () => openTaskWriter.deletesSent,
            connected,
            log: logger.child({ component: "open-tasks" })
          })
      ),
      (upkeep) => Effect.promise(() => upkeep.stop())
    )
    yield* Effect.acquireRelease(
      attempt("start the webhook deliveries", () => runWebhookDeliveries(nc, repo, config.webhooks, { connected })),
      (deliveries) => Effect.promise(() => deliveries.stop())
    )
    return { nc, metrics, projections: running }
  })

/** Starts a broker and returns a handle to stop it (for the CLI and tests). */
export const startBroker = async (config: BrokerConfig, options: BrokerOptions = {}): Promise<RunningBroker> => {
  const scope = Effect.runSync(Scope.make())
  // The layer is built in the broker's scope (not the program's), so its connection and log live
  // until `stop` closes that scope — after everything the program started is stopped.
  const program = Effect.gen(function* () {
    const services = yield* Layer.build(brokerLayer(config, options))
    return yield* brokerProgram(options).pipe(Effect.provide(services))
  })
  const exit = await Effect.runPromiseExit(program.pipe(Scope.extend(scope)))
  if (Exit.isFailure(exit)) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    // The typed failure itself (BrokerStartError), not Effect's wrapper around it.
    throw Cause.squash(exit.cause)
  }
  const started = exit.value
  return {
    ...started,
    stop: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}
