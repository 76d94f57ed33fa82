/**
 * What the HTTP layer needs from the rest: the library it is a shell over, and the metrics it
 * renders. Routes depend on these and not on the server that mounts them.
 */
import type { Connection, ConnectionWatch } from "../eventlog/connection.js"
import type { Naming } from "../../streams/definitions.js"
import type { TaskLimits } from "../tasks/limits.js"
import type { TaskOperations } from "../tasks/operations.js"
import type { TaskRepository } from "../tasks/repository.js"

/** The library the HTTP API is a shell over. `CodeqClient` satisfies it. */
export interface HttpBackend {
  readonly nc: Connection
  /** The connection's state, when the library already follows it (`CodeqClient` does). */
  readonly watch?: ConnectionWatch
  readonly repo: TaskRepository
  readonly tasks: TaskOperations
  readonly limits: TaskLimits
  readonly naming: Naming
}

/** Renders the Prometheus exposition. */
export interface MetricsSource {
  readonly contentType: string
  render(): Promise<string>
}
