/**
 * codeq's services as Effect sees them: the NATS connection, the event log, telemetry, the task
 * repository and the broker's configuration, each a `Context.Tag`, each made by a `Layer`. The
 * edges compose the layers — `startBroker` (the CLI's `serve`) and `CodeqClient.connect` (the SDK,
 * and the HTTP server built on it) — and what they hold is released when their scope closes, in
 * reverse order: the log's publisher before the connection it runs on.
 *
 * The in-memory event log is a layer too, so the repository runs without a server in unit tests.
 */
import type { TracerProvider } from "@opentelemetry/api"
import { Context, Data, Effect, Layer } from "effect"
import type { BrokerConfig } from "../config/config.js"
import { ConnectionWatch, closeConnection, openConnection, type Connection, type OpenOptions } from "../eventlog/connection.js"
import type { EventLog } from "../eventlog/EventLog.js"
import { JetStreamEventLog } from "../eventlog/jetstream.js"
import type { PipelineOptions } from "../eventlog/pipeline.js"
import { InMemoryEventLog } from "../eventlog/memory.js"
import type { Logger } from "../log/log.js"
import { TaskRepository, type RepositoryOptions } from "../tasks/repository.js"
import { Telemetry } from "../tracing/spans.js"
import type { Naming } from "../../streams/definitions.js"

/** An open NATS connection and what its status events say about it. */
export interface LiveConnection {
  readonly nc: Connection
  readonly watch: ConnectionWatch
}

export class Nats extends Context.Tag("codeq/Nats")<Nats, LiveConnection>() {}

/** The event log port; `JetStreamLog` when the JetStream adapter itself is needed (its publisher). */
export class Log extends Context.Tag("codeq/EventLog")<Log, EventLog>() {}
export class JetStreamLog extends Context.Tag("codeq/JetStreamEventLog")<JetStreamLog, JetStreamEventLog>() {}

export class Tracing extends Context.Tag("codeq/Telemetry")<Tracing, Telemetry>() {}

export class Repository extends Context.Tag("codeq/TaskRepository")<Repository, TaskRepository>() {}

/** The broker's configuration (environment and config file, read and checked at the edge). */
export class Settings extends Context.Tag("codeq/BrokerConfig")<Settings, BrokerConfig>() {}

/** The connection could not be opened; `cause` is the client's own error. */
export class ConnectFailed extends Data.TaggedError("ConnectFailed")<{ readonly servers: string; readonly cause: unknown }> {
  override get message() {
    return `cannot connect to NATS at ${this.servers}: ${this.cause instanceof Error ? this.cause.message : String(this.cause)}`
  }
}

export interface NatsLayerOptions extends OpenOptions {
  /** Use this connection instead of opening one. */
  readonly given?: Connection
  /** With `given`: close it too when the scope closes (default: leave it open). */
  readonly closeGiven?: boolean
  /** With `given`: the watch already following it (one per connection; left running on release). */
  readonly watch?: ConnectionWatch
  /** Where the connection's drops and reconnects are logged (once each). */
  readonly log?: Logger
}

/**
 * The connection: opened (and on release drained, or closed at once when the server is gone), or
 * the given one, left open unless `closeGiven`.
 */
export const natsLayer = (options: NatsLayerOptions): Layer.Layer<Nats, ConnectFailed> => {
  const watched = (nc: Connection): LiveConnection => ({ nc, watch: new ConnectionWatch(nc, options.log === undefined ? {} : { log: options.log }) })
  const closes = options.given === undefined || options.closeGiven === true
  return Layer.scoped(
    Nats,
    Effect.acquireRelease(
      options.given !== undefined
        ? Effect.sync(() => (options.watch !== undefined ? { nc: options.given as Connection, watch: options.watch } : watched(options.given as Connection)))
        : Effect.tryPromise({
            try: async () => watched(await openConnection(options)),
            catch: (cause) => new ConnectFailed({ servers: typeof options.servers === "string" ? options.servers : options.servers.join(","), cause })
          }),
      ({ nc, watch }) =>
        Effect.promise(async () => {
          if (watch !== options.watch) watch.stop()
          if (closes) await closeConnection(nc, watch.connected)
        })
    )
  )
}

/** The JetStream event log on the connection, as the port and as itself; its publisher stops on release. */
export const jetStreamLogLayer = (naming: Naming, options: PipelineOptions = {}): Layer.Layer<Log | JetStreamLog, never, Nats> =>
  Layer.scopedContext(
    Effect.gen(function* () {
      const { nc } = yield* Nats
      const log = yield* Effect.acquireRelease(
        Effect.sync(() => JetStreamEventLog.connect(nc, naming, options)),
        (opened) => Effect.sync(() => opened.close())
      )
      return Context.make(Log, log).pipe(Context.add(JetStreamLog, log))
    })
  )

/** An event log in memory (tests): the same contract, no server. */
export const memoryLogLayer = (naming: Naming): Layer.Layer<Log> => Layer.sync(Log, () => new InMemoryEventLog(naming))

/** Spans from `provider` (default the global one). */
export const tracingLayer = (provider?: TracerProvider): Layer.Layer<Tracing> => Layer.sync(Tracing, () => new Telemetry(provider))

/** The task repository over the event log and telemetry. */
export const repositoryLayer = (options: RepositoryOptions = {}): Layer.Layer<Repository, never, Log | Tracing> =>
  Layer.effect(
    Repository,
    Effect.gen(function* () {
      return new TaskRepository(yield* Log, yield* Tracing, options)
    })
  )

export const settingsLayer = (config: BrokerConfig): Layer.Layer<Settings> => Layer.succeed(Settings, config)
