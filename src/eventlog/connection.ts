/**
 * The state of a NATS connection as its status events tell it, and closing it without hanging:
 * a drain needs the server, so with the server gone a connection is closed at once.
 */
import type { NatsConnection } from "nats"

/** Follows the connection's status events: down from a disconnect until the reconnect. */
export class ConnectionWatch {
  private up = true
  private stopped = false

  constructor(private readonly nc: NatsConnection) {
    void this.follow()
  }

  get connected(): boolean {
    return this.up && !this.nc.isClosed()
  }

  stop(): void {
    this.stopped = true
  }

  private async follow(): Promise<void> {
    try {
      for await (const status of this.nc.status()) {
        if (this.stopped) return
        if (status.type === "disconnect") this.up = false
        else if (status.type === "reconnect") this.up = true
      }
    } catch {
      // The iterator ends when the connection closes; `connected` then reads isClosed().
    }
  }
}

/** Drains the connection (bounded by `timeoutMs`) when the server is there; else closes it at once. */
export const closeConnection = async (nc: NatsConnection, connected: boolean, timeoutMs = 2_000): Promise<void> => {
  if (nc.isClosed()) return
  if (connected) {
    let timer: NodeJS.Timeout | undefined
    const drained = await Promise.race([
      nc.drain().then(() => true, () => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)))
    ])
    clearTimeout(timer)
    if (drained) return
  }
  await nc.close().catch(() => undefined)
}
