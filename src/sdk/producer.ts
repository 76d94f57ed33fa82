/** Creating tasks from a NATS-native producer (the fast path next to the HTTP API). */
import { context, type Context } from "@opentelemetry/api"
import { checkTaskId } from "../domain/validation.js"
import { createTask, createTasks, type CreateItemResult, type CreateTaskInput } from "../tasks/create.js"
import { TaskNotFound, ValidationError } from "../tasks/errors.js"
import type { TaskLimits } from "../tasks/limits.js"
import type { TaskRepository } from "../tasks/repository.js"
import { toView, type TaskView } from "../tasks/view.js"

export interface CreateOptions {
  /** Parent of the `codeq.task.create` span; default the active context. */
  readonly parent?: Context
}

export interface CreateManyOptions extends CreateOptions {
  /**
   * Creates in flight at once, 1 to 4096; default 64. Raise it for a server far away: a batch
   * goes at about `maxInFlight` creates per round trip to the server.
   */
  readonly maxInFlight?: number
}

export class Producer {
  constructor(
    private readonly repo: TaskRepository,
    private readonly limits: TaskLimits,
    readonly tenant: string
  ) {}

  /**
   * Creates a task and resolves once its TaskCreated is stored. With an `idempotencyKey` a
   * repeated create resolves with the task that exists. Throws ValidationError (nothing stored).
   */
  create(input: CreateTaskInput, options: CreateOptions = {}): Promise<TaskView> {
    return createTask(this.repo, this.limits, this.tenant, input, options.parent ?? context.active())
  }

  /**
   * Creates many tasks with their appends pipelined, `maxInFlight` at once; one result per input,
   * in order. A broken rule is that input's result (nothing stored for it). Any other failure
   * (the log unreachable) rejects the call, and the inputs not yet started are not created.
   * Throws ValidationError for a `maxInFlight` out of range.
   */
  createMany(inputs: ReadonlyArray<CreateTaskInput>, options: CreateManyOptions = {}): Promise<ReadonlyArray<CreateItemResult>> {
    return createTasks(this.repo, this.limits, this.tenant, inputs, options.parent ?? context.active(), options.maxInFlight)
  }

  /** The task as the log says it is now. Throws TaskNotFound. */
  async get(taskId: string): Promise<TaskView> {
    const issue = checkTaskId(taskId)
    if (issue !== undefined) throw new ValidationError(issue)
    const { state } = await this.repo.load(this.tenant, taskId)
    if (state === null) throw new TaskNotFound({ taskId })
    return toView(state)
  }
}
