/**
 * Upkeep that runs on a timer until stopped: one pass at a time, never one without the server, and
 * a stop that does not wait for a pass whose server is gone. The pass reports its own outcome
 * (logs); a rejection is swallowed, the next tick tries again. A pass is given a signal that a stop
 * aborts: a long pass (thousands of purges) ends at its next step instead of holding the broker's
 * shutdown (a compaction of 20,000 markers held it 57 s).
 */
import type { NatsConnection } from "nats"
import { onReconnect } from "./connection.js"

export interface PeriodicPassOptions {
  /** Time between passes. */
  readonly everyMs: number
  /** A pass this long after each reconnect (the server may just have come back); none without. */
  readonly afterReconnectMs?: number
  /** Whether the server is reachable now: no pass starts without it, and a stop does not wait for one. Default always. */
  readonly connected?: () => boolean
}

export class PeriodicPass {
  private readonly timer: NodeJS.Timeout
  private readonly pending = new Set<NodeJS.Timeout>()
  private running: Promise<void> | undefined
  private readonly stopping = new AbortController()
  private stopped = false

  constructor(
    private readonly nc: NatsConnection,
    private readonly run: (signal: AbortSignal) => Promise<void>,
    private readonly options: PeriodicPassOptions
  ) {
    this.timer = setInterval(() => this.pass(), options.everyMs)
    this.timer.unref()
    const afterReconnectMs = options.afterReconnectMs
    if (afterReconnectMs !== undefined) onReconnect(nc, () => this.after(afterReconnectMs), () => this.stopped)
  }

  /**
   * Stops the timers, aborts a pass in flight and waits for it to end — unless the server is gone:
   * its requests would only time out (seconds), and a pass left behind only fails once the
   * connection closes.
   */
  async stop(): Promise<void> {
    this.stopped = true
    this.stopping.abort()
    clearInterval(this.timer)
    for (const t of this.pending) clearTimeout(t)
    if (this.connected()) await this.running
  }

  /** One pass now (none when one is running). */
  pass(): Promise<void> {
    if (this.stopped || this.nc.isClosed() || !this.connected()) return Promise.resolve()
    this.running ??= this.run(this.stopping.signal)
      .catch(() => undefined)
      .finally(() => {
        this.running = undefined
      })
    return this.running
  }

  private connected(): boolean {
    return this.options.connected?.() ?? true
  }

  private after(ms: number): void {
    const t = setTimeout(() => {
      this.pending.delete(t)
      void this.pass()
    }, ms)
    t.unref()
    this.pending.add(t)
  }
}
