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

  /** Creates many tasks with their appends pipelined; one result per input, in order. */
  createMany(inputs: ReadonlyArray<CreateTaskInput>, options: CreateOptions = {}): Promise<ReadonlyArray<CreateItemResult>> {
    return createTasks(this.repo, this.limits, this.tenant, inputs, options.parent ?? context.active())
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
