/**
 * Queue statistics of a tenant, counted from the read models: per command and priority lane, how
 * many tasks are ready, delayed and in progress, and how many are dead-lettered. Each task is
 * counted once, by its folded state — unlike the claim stream, which cannot tell a task waiting for
 * its `runAt` from one that is leased. The counts are as written when asked (the leader writes up to the log's end first). They come
 * from the open-task index and the dead-letter index, or, until the open-task index is ready, from
 * every task-state document (both give the same counts).
 *
 * Known gap: a task given back with a nack delay is PENDING in its state and counted as ready
 * until the delay ends (TaskState does not keep the nack's retry time).
 */
import type { TaskStatus } from "../domain/events.js"

/** What a count needs of a task: a TaskState, or an open-task index entry. */
export interface Countable {
  readonly command: string
  readonly priority: number
  readonly status: TaskStatus
  readonly runAt?: string | undefined
  readonly purged?: boolean
}

/** Tasks of one lane, or of a whole command, by what they are waiting for. */
export interface LaneCounts {
  /** PENDING and due: a worker's claim takes them next. */
  readonly ready: number
  /** PENDING with a `runAt` (or create delay) still ahead. */
  readonly delayed: number
  /** IN_PROGRESS: leased to a worker. */
  readonly inProgress: number
}

/** One command's queue. */
export interface CommandQueue extends LaneCounts {
  readonly command: string
  /** Per priority lane ("0" lowest … "9" highest); only lanes that hold a task. */
  readonly lanes: Readonly<Record<string, LaneCounts>>
  /** Dead-lettered and not purged. */
  readonly deadLettered: number
}

/** Every queue of a tenant. */
export interface QueueOverview {
  /** Commands with any ready, delayed, in-progress or dead-lettered task, by name. */
  readonly commands: ReadonlyArray<CommandQueue>
  readonly totals: LaneCounts & { readonly deadLettered: number }
}

interface MutableCounts {
  ready: number
  delayed: number
  inProgress: number
}

const zero = (): MutableCounts => ({ ready: 0, delayed: 0, inProgress: 0 })

/** Counts task states as they are visited; `now` decides what is still delayed. */
export class QueueTally {
  private readonly commands = new Map<string, { lanes: Map<number, MutableCounts>; deadLettered: number }>()

  constructor(
    private readonly now: Date,
    /** Count only this command's tasks. */
    private readonly only?: string
  ) {}

  add(state: Countable): void {
    if (this.only !== undefined && state.command !== this.only) return
    const slot = (): MutableCounts => {
      const queue = this.queue(state.command)
      let lane = queue.lanes.get(state.priority)
      if (lane === undefined) queue.lanes.set(state.priority, (lane = zero()))
      return lane
    }
    switch (state.status) {
      case "PENDING":
        if (state.runAt !== undefined && Date.parse(state.runAt) > this.now.getTime()) slot().delayed++
        else slot().ready++
        return
      case "IN_PROGRESS":
        slot().inProgress++
        return
      case "DEAD_LETTERED":
        if (!state.purged) this.queue(state.command).deadLettered++
        return
      case "COMPLETED":
      case "FAILED":
      case "CANCELLED":
        return
    }
  }

  /** A dead letter of `command`, as the dead-letter index lists it (the index holds no purged task). */
  addDeadLetter(command: string): void {
    if (this.only !== undefined && command !== this.only) return
    this.queue(command).deadLettered++
  }

  /** One command's queue (all zero when it has no task). */
  command(command: string): CommandQueue {
    return this.summary(command, this.commands.get(command) ?? { lanes: new Map(), deadLettered: 0 })
  }

  overview(): QueueOverview {
    const commands = [...this.commands.keys()].sort().map((command) => this.command(command))
    const sum = (pick: (q: CommandQueue) => number) => commands.reduce((n, q) => n + pick(q), 0)
    return {
      commands,
      totals: { ready: sum((q) => q.ready), delayed: sum((q) => q.delayed), inProgress: sum((q) => q.inProgress), deadLettered: sum((q) => q.deadLettered) }
    }
  }

  private queue(command: string) {
    let queue = this.commands.get(command)
    if (queue === undefined) this.commands.set(command, (queue = { lanes: new Map(), deadLettered: 0 }))
    return queue
  }

  private summary(command: string, queue: { lanes: Map<number, MutableCounts>; deadLettered: number }): CommandQueue {
    const lanes = [...queue.lanes.entries()].sort(([a], [b]) => a - b)
    const total = zero()
    for (const [, counts] of lanes) {
      total.ready += counts.ready
      total.delayed += counts.delayed
      total.inProgress += counts.inProgress
    }
    return { command, ...total, lanes: Object.fromEntries(lanes.map(([lane, counts]) => [String(lane), { ...counts }])), deadLettered: queue.deadLettered }
  }
}
