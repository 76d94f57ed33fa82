/**
 * Task operations by task id, as the HTTP API and human-facing tools use them: claim (with
 * long-poll), heartbeat, results, nack, abandon, cancel, and the dead-letter queue. One instance
 * per connection; it holds nothing a restart would lose (claim sources are caches).
 */
import { askAndWait, type Connection } from "../eventlog/connection.js"
import { bindBucket, liveEntries, openBucket, type Bucket } from "../eventlog/kv.js"
import { openIndexReady, readOpenTasks } from "../eventlog/openTasks.js"
import { keptUnlessFailed } from "../eventlog/kept.js"
import type { BackoffSettings } from "../domain/backoff.js"
import type { LeaseRef } from "../domain/decide.js"
import { MAX_REASON_LENGTH, checkCommand, checkIntRange, checkMaxLength, checkTaskId, checkTenant, checkWorkerId, firstIssue, type ValidationIssue } from "../domain/validation.js"
import { answerDelivery } from "../eventlog/acks.js"
import { ClaimSource, type ClaimSourceOptions } from "../eventlog/claims/source.js"
import type { LaneWatch } from "../eventlog/claims/laneWatch.js"
import { READ_MODEL_FLUSH_TIMEOUT_MS, deadLetterBucket, deadLetterKey, openTaskBucket, readModelFlushSubject, taskStateBucket } from "../../streams/definitions.js"
import { TaskStateReader } from "../eventlog/taskStates.js"
import type { DeadLetterEntry } from "./view.js"
import { ClaimCapacity, InvalidTransition, TaskNotFound, ValidationError } from "./errors.js"
import {
  boundOutcome,
  cancelTask,
  claimDelivery,
  heartbeatLease,
  requeueTask,
  settleLease,
  type HeldLease,
  type LeaseOutcome,
  type Settle,
  type SettledLease
} from "./lifecycle.js"
import type { TaskLimits } from "./limits.js"
import { HeldLeases } from "./heldLeases.js"
import { NewestTasks } from "./newest.js"
import { QueueTally, type CommandQueue, type QueueOverview } from "./queues.js"
import type { TaskRepository } from "./repository.js"
import { toView, type TaskView } from "./view.js"
import type { TaskState, TaskStatus } from "../domain/events.js"

export interface ClaimRequest {
  readonly workerId: string
  readonly leaseSeconds?: number
  /** Long-poll: wait up to this long for a task (0–30 s). Default 0. */
  readonly waitSeconds?: number
}

export interface ClaimedTask {
  readonly task: TaskView
  readonly lease: HeldLease
}

/** Most tasks one claim call takes at once (HTTP's batch claim asks for up to 10). */
export const MAX_CLAIM_COUNT = 100

const check = (...issues: ReadonlyArray<ValidationIssue | undefined>) => {
  const issue = firstIssue(...issues)
  if (issue !== undefined) throw new ValidationError(issue)
}

const decoder = new TextDecoder()

/**
 * Claim sources: one per (tenant, set of commands) a claim names, kept between claims so a
 * long-polling client finds its lanes known. Bounded, because any worker token can name new sets.
 */
export interface ClaimSourcePoolOptions extends ClaimSourceOptions {
  /** A source unused this long is closed and forgotten. Default 120 s. */
  readonly sourceIdleMs?: number
  /**
   * Live sources per tenant at most; a new one evicts the least recently used idle one, and when
   * all are long-polling the claim is refused with ClaimCapacity (HTTP 429). Default 64.
   */
  readonly maxSourcesPerTenant?: number
}

export class TaskOperations {
  readonly settle: Settle
  private readonly sources = new Map<string, { readonly tenant: string; readonly source: ClaimSource; lastUsed: number }>()
  private readonly evictor: NodeJS.Timeout
  private readonly sourceIdleMs: number
  private readonly maxSourcesPerTenant: number
  private readonly held: HeldLeases
  /** The dead-letter and open-task indexes (kept.ts: a failed open is tried again). */
  private readonly deadLetterIndex: () => Promise<Bucket>
  private readonly openTaskIndex: () => Promise<Bucket>
  private readonly taskStates: TaskStateReader

  constructor(
    private readonly nc: Connection,
    readonly repo: TaskRepository,
    readonly limits: TaskLimits,
    readonly backoff: BackoffSettings,
    private readonly lanes: LaneWatch,
    private readonly sourceOptions: ClaimSourcePoolOptions = {}
  ) {
    this.settle = (subject, how) => answerDelivery(nc, subject, how)
    this.held = new HeldLeases(this.settle)
    this.taskStates = new TaskStateReader(nc, taskStateBucket(repo.log.naming))
    this.deadLetterIndex = keptUnlessFailed(() => openBucket(nc, deadLetterBucket(repo.log.naming)))
    this.openTaskIndex = keptUnlessFailed(() => bindBucket(nc, openTaskBucket(repo.log.naming)))
    this.sourceIdleMs = sourceOptions.sourceIdleMs ?? 120_000
    this.maxSourcesPerTenant = sourceOptions.maxSourcesPerTenant ?? 64
    // Any HTTP client can name a new set of commands: sources unused for a while are closed.
    this.evictor = setInterval(() => this.evictIdle(this.sourceIdleMs), Math.max(10, this.sourceIdleMs / 2))
    this.evictor.unref()
  }

  async get(tenant: string, taskId: string): Promise<TaskView> {
    check(checkTenant(tenant), checkTaskId(taskId))
    const { state } = await this.repo.load(tenant, taskId)
    if (state === null) throw new TaskNotFound({ taskId })
    return toView(state)
  }

  /** Claims the next task of `commands` (highest priority first), or undefined when none came. */
  async claim(tenant: string, commands: ReadonlyArray<string>, request: ClaimRequest, signal?: AbortSignal): Promise<ClaimedTask | undefined> {
    return (await this.claimMany(tenant, commands, request, 1, signal))[0]
  }

  /**
   * Claims up to `count` tasks of `commands`, highest priority first, in one pull; waits up to
   * `waitSeconds` for the first and returns what came with it.
   */
  async claimMany(tenant: string, commands: ReadonlyArray<string>, request: ClaimRequest, count: number, signal?: AbortSignal): Promise<ReadonlyArray<ClaimedTask>> {
    // From JavaScript anything may come: a string would pass as its characters.
    if (!Array.isArray(commands)) throw new ValidationError({ field: "commands", rule: "type", message: "commands must be an array of commands" })
    check(
      checkTenant(tenant),
      checkWorkerId(request.workerId),
      commands.length === 0 ? { field: "commands", rule: "non_empty", message: "commands must name at least one command" } : undefined,
      commands.length > this.limits.maxClaimCommands
        ? { field: "commands", rule: "max_items", message: `a claim names at most ${this.limits.maxClaimCommands} commands` }
        : undefined,
      ...commands.map((command) => checkCommand(command, "commands")),
      checkIntRange(count, "count", 1, MAX_CLAIM_COUNT),
      request.leaseSeconds === undefined ? undefined : checkIntRange(request.leaseSeconds, "leaseSeconds", 1, this.limits.maxLeaseSeconds),
      request.waitSeconds === undefined ? undefined : checkIntRange(request.waitSeconds, "waitSeconds", 0, 30)
    )
    const source = this.sourceFor(tenant, commands)
    const deadline = Date.now() + (request.waitSeconds ?? 0) * 1000
    const options = {
      workerId: request.workerId,
      defaultLeaseSeconds: this.limits.defaultLeaseSeconds,
      keepAliveAckWaitMs: source.ackWait,
      ...(request.leaseSeconds !== undefined ? { leaseSeconds: request.leaseSeconds } : {})
    }
    const claimed: Array<ClaimedTask> = []
    for (;;) {
      const deliveries = await source.next(count, Math.max(0, deadline - Date.now()), signal)
      if (deliveries.length === 0) return claimed
      const results = await Promise.all(deliveries.map((delivery) => claimDelivery(this.repo, this.settle, delivery, options)))
      results.forEach((result, i) => {
        const delivery = deliveries[i]
        if (delivery === undefined) return
        if (result.kind === "claimed" && result.lease.snapshot.state !== null) {
          this.held.remember(result.lease, delivery.ackSubject, source.ackWait)
          claimed.push({ task: toView(result.lease.snapshot.state), lease: result.lease })
        } else if (result.kind === "skipped" && result.retryAt !== undefined) source.hint(delivery.command, delivery.lane, result.retryAt)
      })
      if (claimed.length > 0 || (Date.now() >= deadline && (request.waitSeconds ?? 0) > 0)) return claimed
    }
  }

  async heartbeat(tenant: string, taskId: string, lease: LeaseRef, extendSeconds?: number): Promise<TaskView> {
    // Only an absent extension takes the default: a null from JavaScript is refused, as for a nak's delay.
    const extend = extendSeconds === undefined ? this.limits.defaultLeaseSeconds : extendSeconds
    check(checkTenant(tenant), checkTaskId(taskId), checkWorkerId(lease.workerId), checkIntRange(extend, "extendSeconds", 1, this.limits.maxLeaseSeconds))
    const known = this.held.known(tenant, taskId, lease.workerId)
    const state = await heartbeatLease(this.repo, this.settle, { tenant, taskId, lease, ...(known !== undefined ? { known } : {}) }, extend)
    this.held.extended(tenant, taskId, { state, version: state.version })
    return toView(state)
  }

  /** Completes, fails, nacks or abandons a held lease. Throws LeaseLost for a stale holder. */
  async settleLease(tenant: string, taskId: string, lease: LeaseRef, outcome: LeaseOutcome): Promise<SettledLease> {
    check(
      checkTenant(tenant),
      checkTaskId(taskId),
      checkWorkerId(lease.workerId),
      outcome.type === "nack" && outcome.delaySeconds !== undefined ? checkIntRange(outcome.delaySeconds, "delaySeconds", 0, this.limits.maxDelaySeconds) : undefined,
      // What a worker sends is held to what the log can store: refused here, as over HTTP.
      boundOutcome(outcome, this.limits).issue
    )
    const known = this.held.known(tenant, taskId, lease.workerId)
    try {
      const settled = await settleLease(this.repo, this.settle, { tenant, taskId, lease, ...(known !== undefined ? { known } : {}) }, outcome, this.backoff)
      if (settled.disposition === "requeued") this.hintRequeued(settled.state, outcome.type === "nack" ? (settled.nakDelaySeconds ?? 0) : 0)
      return settled
    } finally {
      // Settled, or refused because the lease is gone: either way nothing is held any more.
      this.held.forget(tenant, taskId)
    }
  }

  /** Tells the claim sources of this process that a nak'ed claim is due back (no rescan wait). */
  private hintRequeued(state: TaskState, delaySeconds: number): void {
    const at = new Date(Date.now() + delaySeconds * 1000)
    for (const [key, { source }] of this.sources) {
      const [tenant, commands] = key.split("|")
      if (tenant === state.tenant && (commands ?? "").split(",").includes(state.command)) source.hint(state.command, state.priority, at)
    }
  }

  async cancel(tenant: string, taskId: string, reason = "cancelled"): Promise<TaskView> {
    check(checkTenant(tenant), checkTaskId(taskId), checkMaxLength(reason, "reason", MAX_REASON_LENGTH))
    return toView(await cancelTask(this.repo, this.settle, tenant, taskId, reason))
  }

  /**
   * Tasks of a tenant from the task-state read model (it may trail the log by the projection's
   * lag), optionally of one status, command and trace (the trace id of the create's traceparent:
   * the tasks created under one inbound trace share it), newest first, at most `limit`. Streams
   * the tenant's task states, holding at most twice `limit` of them; a task written meanwhile may
   * or may not be there. Waiting or leased tasks (status PENDING or IN_PROGRESS, no trace) are
   * chosen from the open-task index when it is ready (the tenant's open tasks held by key while
   * they are chosen), and only the chosen ones' documents read.
   */
  async list(
    tenant: string,
    filter: { readonly status?: TaskStatus; readonly command?: string; readonly traceId?: string; readonly limit?: number } = {}
  ): Promise<ReadonlyArray<TaskView>> {
    const limit = filter.limit ?? 100
    check(checkTenant(tenant), filter.command === undefined ? undefined : checkCommand(filter.command), checkIntRange(limit, "limit", 1, 1000))
    await this.readModelWritten()
    const matches = (s: TaskState) =>
      (filter.status === undefined || s.status === filter.status) &&
      (filter.command === undefined || s.command === filter.command) &&
      (filter.traceId === undefined || s.traceParent?.split("-")[1] === filter.traceId)
    if ((filter.status === "PENDING" || filter.status === "IN_PROGRESS") && filter.traceId === undefined) {
      const fromIndex = await this.listOpen(tenant, filter.status, filter.command, limit, matches)
      if (fromIndex !== undefined) return fromIndex
    }
    const newest = new NewestTasks(limit)
    await this.taskStates.scan(tenant, (state) => newest.offer(state, matches(state)))
    return newest.newest().map(toView)
  }

  /**
   * The newest open tasks of one status from the index, their documents read; undefined when the
   * index is not ready. Twice `limit` candidates are read, so a task that moved on since the index
   * was written leaves room for the next one.
   */
  private async listOpen(tenant: string, status: TaskStatus, command: string | undefined, limit: number, matches: (s: TaskState) => boolean): Promise<ReadonlyArray<TaskView> | undefined> {
    const index = await this.openTaskIndex()
    if (!(await openIndexReady(index).catch(() => false))) return undefined
    const candidates = [...(await readOpenTasks(index, tenant))]
      .filter(([, task]) => task.status === status && (command === undefined || task.command === command))
      .sort(([, a], [, b]) => b.createdSeq - a.createdSeq)
      .slice(0, 2 * limit)
    const states = await Promise.all(candidates.map(([key]) => this.taskStates.get(tenant, key.slice(tenant.length + 1))))
    return states
      .filter((state): state is TaskState => state !== null && matches(state))
      .sort((a, b) => b.createdSeq - a.createdSeq)
      .slice(0, limit)
      .map(toView)
  }

  /**
   * Every queue of a tenant from the read models (written up to the log's end first, see
   * `readModelWritten`): per command and lane, tasks ready, delayed (runAt ahead) and in progress,
   * and the dead-lettered ones. Reads the tenant's open tasks from the open-task index (kept by key
   * until counted, so a task written again meanwhile counts once) and its dead letters' keys from
   * their index — a message each; until the open-task index is ready (see eventlog/openTasks.ts),
   * every task state the bucket holds for the tenant, ended ones too.
   */
  async queues(tenant: string): Promise<QueueOverview> {
    check(checkTenant(tenant))
    return (await this.tally(tenant)).overview()
  }

  /** One command's queue, as `queues` counts it (the same scan: keys do not name the command). */
  async queue(tenant: string, command: string): Promise<CommandQueue> {
    check(checkTenant(tenant), checkCommand(command))
    return (await this.tally(tenant, command)).command(command)
  }

  private async tally(tenant: string, command?: string): Promise<QueueTally> {
    await this.readModelWritten()
    const tally = new QueueTally(new Date(), command)
    const index = await this.openTaskIndex()
    // A bucket that is missing (no broker of this version has run) is not ready either.
    if (await openIndexReady(index).catch(() => false)) {
      await Promise.all([
        readOpenTasks(index, tenant).then((open) => {
          for (const task of open.values()) tally.add(task)
        }),
        (async () => {
          const deadLetters = await liveEntries(await this.deadLetterIndex(), `${tenant}.${command ?? "*"}.*`, { headersOnly: true })
          for (const key of deadLetters.keys()) tally.addDeadLetter(key.split(".")[1] ?? "")
        })()
      ])
    } else await this.taskStates.scan(tenant, (state) => tally.add(state))
    return tally
  }

  /**
   * Asks the projections' leader to apply what the log holds and write what it has coalesced, and
   * waits for it (at most READ_MODEL_FLUSH_TIMEOUT_MS): a read of the read model then sees every
   * event the log held when it asked — a task created just before is listed. Without an answer
   * (an election, no permission to ask) the read goes on with what is written, at most 30 s
   * behind (projections/docs.ts).
   */
  private async readModelWritten(): Promise<void> {
    await askAndWait(this.nc, readModelFlushSubject(this.repo.log.naming), READ_MODEL_FLUSH_TIMEOUT_MS)
  }

  /** Dead-lettered tasks of a tenant, optionally of one command, oldest first. */
  async deadLetters(tenant: string, command?: string): Promise<ReadonlyArray<DeadLetterEntry>> {
    check(checkTenant(tenant), command === undefined ? undefined : checkCommand(command))
    await this.readModelWritten()
    const entries = await liveEntries(await this.deadLetterIndex(), `${tenant}.${command ?? "*"}.*`)
    return [...entries.values()]
      .map(({ value }) => JSON.parse(decoder.decode(value)) as DeadLetterEntry)
      .sort((a, b) => a.deadLetteredAt.localeCompare(b.deadLetteredAt))
  }

  async requeue(tenant: string, taskId: string, reason = "operator requeue"): Promise<TaskView> {
    check(checkTenant(tenant), checkTaskId(taskId), checkMaxLength(reason, "reason", MAX_REASON_LENGTH))
    return toView(await requeueTask(this.repo, tenant, taskId, reason))
  }

  /** Removes a dead-lettered task from the queue for good (a TaskPurged event). */
  async purge(tenant: string, taskId: string, reason = "operator purge"): Promise<void> {
    check(checkTenant(tenant), checkTaskId(taskId), checkMaxLength(reason, "reason", MAX_REASON_LENGTH))
    const applied = await this.repo.apply(tenant, taskId, (now) => ({ type: "PurgeTask", taskId, tenant, now, reason }))
    if (!applied.ok && applied.rejection.reason === "not_found") throw new TaskNotFound({ taskId })
    if (!applied.ok) throw new InvalidTransition({ taskId, reason: applied.rejection.reason, message: applied.rejection.message })
    // The projection will drop the entry too; dropping it here makes the purge visible at once.
    const state = applied.snapshot.state
    if (state !== null) await (await this.deadLetterIndex()).delete(deadLetterKey(tenant, state.command, taskId))
  }

  close(): void {
    clearInterval(this.evictor)
    this.held.close()
    for (const { source } of this.sources.values()) source.close()
    this.sources.clear()
  }

  private evictIdle(idleMs: number): void {
    const now = Date.now()
    for (const [key, entry] of this.sources)
      if (now - entry.lastUsed > idleMs && !entry.source.busy) {
        entry.source.close()
        this.sources.delete(key)
      }
  }

  /** Claim sources alive right now (for operators and tests). */
  get claimSources(): number {
    return this.sources.size
  }

  private sourceFor(tenant: string, commands: ReadonlyArray<string>): ClaimSource {
    const key = `${tenant}|${[...new Set(commands)].sort().join(",")}`
    let entry = this.sources.get(key)
    if (entry === undefined) {
      this.makeRoomFor(tenant)
      entry = { tenant, source: new ClaimSource(this.nc, this.repo.log.naming, tenant, commands, this.lanes, this.sourceOptions), lastUsed: Date.now() }
      this.sources.set(key, entry)
    }
    entry.lastUsed = Date.now()
    return entry.source
  }

  /** Keeps a tenant under its source cap: closes its least recently used idle source, or refuses. */
  private makeRoomFor(tenant: string): void {
    const own = [...this.sources].filter(([, entry]) => entry.tenant === tenant)
    if (own.length < this.maxSourcesPerTenant) return
    const idle = own.filter(([, entry]) => !entry.source.busy).sort(([, a], [, b]) => a.lastUsed - b.lastUsed)
    const victim = idle[0]
    if (victim === undefined) throw new ClaimCapacity({ tenant, limit: this.maxSourcesPerTenant })
    victim[1].source.close()
    this.sources.delete(victim[0])
  }

}
