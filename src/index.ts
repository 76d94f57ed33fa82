/** codeq's public surface. Everything a user imports is listed here by name. */
export { CodeqClient, type CodeqClientOptions } from "./sdk/client.js"
export { Producer, type CreateOptions, type CreateManyOptions } from "./sdk/producer.js"
export {
  Worker,
  complete,
  fail,
  nack,
  abandon,
  type Handler,
  type HandlerOutcome,
  type JobContext,
  type RunOptions,
  type WorkerOptions
} from "./sdk/worker.js"
export type { CreateTaskInput, CreateItemResult } from "./tasks/create.js"
export type { TaskView } from "./tasks/view.js"
export type { TaskLimits } from "./tasks/limits.js"
export { ValidationError, TaskNotFound, LeaseLost, InvalidTransition, type TaskOperationError } from "./tasks/errors.js"
export { ConcurrencyConflict, LogError, type AppendError, type LogErrorReason } from "./eventlog/errors.js"
export type { TaskEvent, TaskEventType, TaskState, TaskStatus, StoredEvent, EventTrace } from "./domain/events.js"
export type { BackoffPolicy, BackoffSettings } from "./domain/backoff.js"
export { startBroker, brokerProgram, brokerLayer, type RunningBroker, type BrokerOptions } from "./broker.js"
export {
  Nats,
  Log,
  JetStreamLog,
  Tracing,
  Repository,
  Settings,
  ConnectFailed,
  natsLayer,
  jetStreamLogLayer,
  memoryLogLayer,
  tracingLayer,
  repositoryLayer,
  settingsLayer,
  type LiveConnection,
  type NatsLayerOptions
} from "./services/services.js"
export type { BrokerConfig } from "./config/config.js"
export { DEFAULT_NAMING, type Naming, type StreamSettings } from "../streams/definitions.js"
export { startHttpServer, HttpConfig, httpServerOptions, type HttpServerOptions, type RunningHttpServer } from "./http/index.js"
export { setupTracing, type TracingHandle } from "./tracing/setup.js"
export { TracingConfigError, type TracingConfigInput } from "./tracing/config.js"
export { createLogger } from "./log/log.js"
export { withTrace, traceFields } from "./tracing/logFields.js"
export { TaskOperations, type ClaimRequest, type ClaimedTask } from "./tasks/operations.js"
export type { QueueOverview, CommandQueue, LaneCounts } from "./tasks/queues.js"
