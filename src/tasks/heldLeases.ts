/**
 * Leases this process handed out (HTTP claims), remembered so their results and heartbeats need no
 * read of the log, and kept alive without a message at claim time.
 *
 * - The state a lease was claimed at is the expected version of the result's append: if nothing
 *   happened to the task since, the result appends straight after it; if something did (another
 *   broker heartbeated it, the lease ran out), the append is refused and the repository reads the
 *   log and decides again. So a forgotten or stale entry costs a read, never a wrong result.
 * - A claim whose lease outlasts the claim consumer's ack wait is not nak'ed at claim time: if it
 *   is still held at half the ack wait, its message is rescheduled to the lease's end (one
 *   message, none for a lease settled sooner). A broker that dies before then lets the message come
 *   back at the ack wait; whoever pulls it finds the lease live in the log and reschedules it.
 *
 * Bounded: the oldest entries are dropped first (their timers with them: such a lease is then kept
 * alive by the redelivery rule above).
 */
import type { Snapshot } from "./repository.js"
import type { HeldLease, Settle } from "./lifecycle.js"
import { timerDelayMs } from "../domain/delays.js"

interface Held {
  snapshot: Snapshot
  readonly workerId: string
  keepAlive: NodeJS.Timeout | undefined
}

const keyOf = (tenant: string, taskId: string) => `${tenant}.${taskId}`

export class HeldLeases {
  private readonly held = new Map<string, Held>()

  constructor(
    private readonly settle: Settle,
    private readonly capacity = 10_000
  ) {}

  /** Remembers a lease just claimed through `ackSubject` from a consumer with `ackWaitMs`. */
  remember(lease: HeldLease, ackSubject: string, ackWaitMs: number): void {
    const key = keyOf(lease.tenant, lease.taskId)
    this.forgetKey(key)
    let keepAlive: NodeJS.Timeout | undefined
    if (lease.leaseSeconds * 1000 >= ackWaitMs) {
      const leaseEnd = Date.now() + lease.leaseSeconds * 1000
      keepAlive = setTimeout(() => {
        const entry = this.held.get(key)
        if (entry?.keepAlive === keepAlive) this.settle(ackSubject, { nakDelayMs: leaseEnd - Date.now() })
      }, timerDelayMs(ackWaitMs / 2))
      keepAlive.unref()
    }
    this.held.set(key, { snapshot: lease.snapshot, workerId: lease.workerId, keepAlive })
    if (this.held.size > this.capacity) this.forgetKey(this.held.keys().next().value ?? "")
  }

  /** The state the caller's lease was claimed (or last extended) at, when this process knows it. */
  known(tenant: string, taskId: string, workerId: string): Snapshot | undefined {
    const entry = this.held.get(keyOf(tenant, taskId))
    return entry !== undefined && entry.workerId === workerId ? entry.snapshot : undefined
  }

  /**
   * After a heartbeat: the new state is the next append's expected version, and the heartbeat
   * rescheduled the claim message itself (to the new lease end), so the keep-alive is not needed.
   */
  extended(tenant: string, taskId: string, snapshot: Snapshot): void {
    const entry = this.held.get(keyOf(tenant, taskId))
    if (entry === undefined) return
    entry.snapshot = snapshot
    clearTimeout(entry.keepAlive)
    entry.keepAlive = undefined
  }

  /** The lease was settled (or lost): nothing more to keep alive. */
  forget(tenant: string, taskId: string): void {
    this.forgetKey(keyOf(tenant, taskId))
  }

  get size(): number {
    return this.held.size
  }

  close(): void {
    for (const entry of this.held.values()) clearTimeout(entry.keepAlive)
    this.held.clear()
  }

  private forgetKey(key: string): void {
    const entry = this.held.get(key)
    if (entry === undefined) return
    clearTimeout(entry.keepAlive)
    this.held.delete(key)
  }
}
