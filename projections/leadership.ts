/**
 * Which broker runs the projections, and where they are in the log. Brokers are many and stateless,
 * but the projections are one fold of one log: one broker at a time holds a lease in the
 * projections bucket (key `leader`), renews it well inside its time to live, and keeps the fold's
 * position there (key `position`). Both are compare-and-set on the entry's revision, so a broker
 * that lost the lease (paused, partitioned) cannot move the position: its next write fails and it
 * stops. A broker that stops cleanly gives the lease up at once; one that dies loses it when it
 * runs out, and a standby takes over from the saved position.
 */
import type { KV } from "nats"

interface LeaderEntry {
  readonly holder: string
  /** Epoch ms after which another broker may take over. */
  readonly until: number
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

const parse = <T>(value: Uint8Array | undefined): T | undefined => {
  if (value === undefined || value.length === 0) return undefined
  try {
    return JSON.parse(decoder.decode(value)) as T
  } catch {
    return undefined
  }
}

const isLive = (entry: { readonly operation: string } | null): entry is { readonly operation: "PUT"; readonly value: Uint8Array; readonly revision: number } =>
  entry !== null && entry.operation === "PUT"

export class ProjectionLeadership {
  private leaderRevision = 0
  private positionRevision = 0

  constructor(
    private readonly kv: KV,
    readonly holder: string,
    private readonly ttlMs = 15_000
  ) {}

  /** Takes the lease if nobody holds it or it has run out; true when this broker now holds it. */
  async tryAcquire(): Promise<boolean> {
    const value = encoder.encode(JSON.stringify({ holder: this.holder, until: Date.now() + this.ttlMs } satisfies LeaderEntry))
    const current = await this.kv.get("leader")
    try {
      if (!isLive(current)) {
        this.leaderRevision = current === null ? await this.kv.create("leader", value) : await this.kv.update("leader", value, current.revision)
        return true
      }
      const entry = parse<LeaderEntry>(current.value)
      if (entry !== undefined && entry.holder !== this.holder && entry.until > Date.now()) return false
      this.leaderRevision = await this.kv.update("leader", value, current.revision)
      return true
    } catch {
      // Someone else took it in between.
      return false
    }
  }

  /** Extends the lease; false when it was lost (another broker holds it now). */
  async renew(): Promise<boolean> {
    const value = encoder.encode(JSON.stringify({ holder: this.holder, until: Date.now() + this.ttlMs } satisfies LeaderEntry))
    try {
      this.leaderRevision = await this.kv.update("leader", value, this.leaderRevision)
      return true
    } catch {
      return false
    }
  }

  /** Gives the lease up so a standby can take over at once. */
  async release(): Promise<void> {
    await this.kv.delete("leader", { previousSeq: this.leaderRevision }).catch(() => undefined)
  }

  /** The saved position (0 when none): the fold resumes after it. */
  async position(): Promise<number> {
    const current = await this.kv.get("position")
    this.positionRevision = current?.revision ?? 0
    return isLive(current) ? (parse<{ seq: number }>(current.value)?.seq ?? 0) : 0
  }

  /** Saves the position; rejects when another broker saved one since (this one lost the lease). */
  async save(seq: number): Promise<void> {
    const value = encoder.encode(JSON.stringify({ seq, holder: this.holder, at: new Date().toISOString() }))
    this.positionRevision =
      this.positionRevision === 0 ? await this.kv.create("position", value) : await this.kv.update("position", value, this.positionRevision)
  }

  /** The saved position as any broker reads it (for the lag of a standby's metrics). */
  static async savedPosition(kv: KV): Promise<number> {
    const current = await kv.get("position")
    return isLive(current) ? (parse<{ seq: number }>(current.value)?.seq ?? 0) : 0
  }
}
