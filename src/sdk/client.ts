/**
 * The NATS-native SDK entry point: one connection, the event log on it, and factories for
 * producers and workers of a tenant. Everything the HTTP API does goes through the same calls.
 */
import { Cause, Effect, Exit, Layer, ManagedRuntime } from "effect"
import type { Connection, ConnectionWatch } from "../eventlog/connection.js"
import { ConnectFailed, JetStreamLog, Nats, Repository, jetStreamLogLayer, natsLayer, repositoryLayer, tracingLayer } from "../services/services.js"
import type { TracerProvider } from "@opentelemetry/api"
import { DEFAULT_NAMING, type Naming } from "../../streams/definitions.js"
import { DEFAULT_BACKOFF, type BackoffSettings } from "../domain/backoff.js"
import type { JetStreamEventLog } from "../eventlog/jetstream.js"
import type { TaskRepository } from "../tasks/repository.js"
import { DEFAULT_LIMITS, type TaskLimits } from "../tasks/limits.js"
import { Producer } from "./producer.js"
import { Worker, type WorkerOptions } from "./worker.js"
import { TaskOperations, type ClaimSourcePoolOptions } from "../tasks/operations.js"
import { LaneWatch } from "../eventlog/claims/laneWatch.js"

export interface CodeqClientOptions {
  /** NATS server URL(s). Default `NATS_URL` or nats://127.0.0.1:4222. */
  readonly servers?: string | ReadonlyArray<string>
  /** Use this connection instead of opening one; `close()` leaves it open unless `closeConnection`. */
  readonly connection?: Connection
  /** With `connection`: close it too on `close()`. */
  readonly closeConnection?: boolean
  /** With `connection`: the watch already following it, rather than one more. */
  readonly connectionWatch?: ConnectionWatch
  readonly naming?: Naming
  /** Spans come from here; default the global provider (ids are generated even without one). */
  readonly tracerProvider?: TracerProvider
  readonly limits?: Partial<TaskLimits>
  /** Delay policy of a nack that names no delay. */
  readonly backoff?: Partial<BackoffSettings>
  /** Deadline for each append's ack. Default 5 s. */
  readonly ackTimeoutMs?: number
  /**
   * How long an append nobody answered (a stream leader election) — or a create whose ack timed
   * out — is sent again before the error is reported. Default 5 s; 0 never retries.
   */
  readonly appendRetryMs?: number
  /**
   * How long an append that got no ack is looked for in the log before its timeout is reported
   * (it may have been stored). Default 30 s.
   */
  readonly resolveUnknownMs?: number
  /** Bounds on the claim sources kept for `tasks.claim` (HTTP claims). */
  readonly claimSources?: ClaimSourcePoolOptions
}

/** The client's services: the connection (its own, or the one given), the log on it, telemetry, the repository. */
const clientLayer = (options: CodeqClientOptions) => {
  const servers = options.servers ?? process.env.NATS_URL ?? "nats://127.0.0.1:4222"
  const nats = natsLayer({
    servers,
    ...(options.connection !== undefined ? { given: options.connection, closeGiven: options.closeConnection === true } : {}),
    ...(options.connection !== undefined && options.connectionWatch !== undefined ? { watch: options.connectionWatch } : {})
  })
  const logs = jetStreamLogLayer(options.naming ?? DEFAULT_NAMING, options.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: options.ackTimeoutMs }).pipe(Layer.provideMerge(nats))
  const repository = repositoryLayer({
    ...(options.appendRetryMs !== undefined ? { appendRetryMs: options.appendRetryMs } : {}),
    ...(options.resolveUnknownMs !== undefined ? { resolveUnknownMs: options.resolveUnknownMs } : {})
  })
  return repository.pipe(Layer.provideMerge(Layer.merge(logs, tracingLayer(options.tracerProvider))))
}

/** A connection to codeq over NATS. */
export class CodeqClient {
  private constructor(
    readonly nc: Connection,
    /** Whether the connection is up right now, as its status events tell it. */
    readonly watch: ConnectionWatch,
    readonly log: JetStreamEventLog,
    readonly repo: TaskRepository,
    readonly limits: TaskLimits,
    readonly backoff: BackoffSettings,
    /** Releases what `connect` built (the log, then the connection it owns). */
    private readonly runtime: { dispose(): Promise<void> },
    claimSources: ClaimSourcePoolOptions
  ) {
    this.lanes = new LaneWatch(nc, log.naming)
    this.tasks = new TaskOperations(nc, repo, limits, backoff, this.lanes, claimSources)
  }

  /** Which claim lanes got work: one subscription per tenant, shared by every claim source here. */
  private readonly lanes: LaneWatch

  /** Operations by task id: claim, heartbeat, results, nack, abandon, cancel, dead letters. */
  readonly tasks: TaskOperations

  /**
   * Connects (or takes `connection`) and builds the client's services from their layers; `close`
   * releases them. Rejects with the client's own connect error when NATS cannot be reached.
   */
  static async connect(options: CodeqClientOptions = {}): Promise<CodeqClient> {
    const runtime = ManagedRuntime.make(clientLayer(options))
    const exit = await runtime.runPromiseExit(Effect.all({ nats: Nats, log: JetStreamLog, repo: Repository }))
    if (Exit.isFailure(exit)) {
      await runtime.dispose()
      const failure = Cause.squash(exit.cause)
      throw failure instanceof ConnectFailed ? failure.cause : failure
    }
    const { nats, log, repo } = exit.value
    return new CodeqClient(nats.nc, nats.watch, log, repo, { ...DEFAULT_LIMITS, ...options.limits }, { ...DEFAULT_BACKOFF, ...options.backoff }, runtime, options.claimSources ?? {})
  }

  get naming(): Naming {
    return this.log.naming
  }

  producer(tenant: string): Producer {
    return new Producer(this.repo, this.limits, tenant)
  }

  worker(tenant: string, options: WorkerOptions = {}): Worker {
    return new Worker(this.nc, this.repo, this.limits, this.backoff, tenant, options)
  }

  /** Stops the publisher and, when the client opened it (or `closeConnection`), drains the connection. */
  async close(): Promise<void> {
    this.tasks.close()
    this.lanes.close()
    await this.runtime.dispose()
  }
}
