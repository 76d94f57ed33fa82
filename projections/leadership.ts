/**
 * Which broker runs the projections, and where they are in the log. Brokers are many and stateless,
 * but the projections are one fold of one log: one broker at a time holds a lease in the
 * projections bucket (key `leader`), renews it well inside its time to live, and keeps the fold's
 * position there (key `position`). Both are compare-and-set on the entry's revision, so a broker
 * that lost the lease (paused, partitioned) cannot move the position: its next write fails and it
 * stops. A broker that stops cleanly gives the lease up at once; one that dies loses it when it
 * runs out, and a standby takes over from the saved position.
 *
 * WHY a presence subject: a broker that is killed holds the lease until it runs out, and nothing
 * is dispatched meanwhile. Every broker answers on a subject of its own for as long as its
 * connection lives, and the lease names it: a standby that finds nobody answering there (the
 * server says "no responders" the moment the holder's connection is gone) takes over at once
 * instead of waiting out the lease. The compare-and-set on the revision still fences a holder
 * that was only cut off for a moment: its next renewal fails and it stops.
 */
import { answerPresence, isAbsent, type Connection } from "../src/eventlog/connection.js"
import type { Bucket } from "../src/eventlog/kv.js"
import { utf8 } from "../src/eventlog/utf8.js"

interface LeaderEntry {
  readonly holder: string
  /** Epoch ms after which another broker may take over. */
  readonly until: number
  /** Where the holder answers while its connection lives (absent in a lease an older broker wrote). */
  readonly presence?: string
}

/** A broker's presence: answered by its own connection, looked for by the others. */
export interface Presence {
  readonly nc: Connection
  readonly subject: string
}

/** The presence subject of `holder` under `subjectRoot` (outside every stream's subjects). */
export const presenceSubject = (subjectRoot: string, holder: string): string => `${subjectRoot}.presence.projections.${holder.replace(/[^A-Za-z0-9_-]/g, "_")}`

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
  private readonly stopAnswering: () => void

  constructor(
    private readonly kv: Bucket,
    readonly holder: string,
    private readonly presence: Presence,
    private readonly ttlMs = 15_000
  ) {
    this.stopAnswering = answerPresence(presence.nc, presence.subject)
  }

  /** Stops answering on the presence subject (the broker is going). */
  close(): void {
    this.stopAnswering()
  }

  private entry(): Uint8Array {
    const entry: LeaderEntry = { holder: this.holder, until: Date.now() + this.ttlMs, presence: this.presence.subject }
    return utf8(JSON.stringify(entry))
  }

  /** Takes the lease if nobody holds it or it has run out; true when this broker now holds it. */
  async tryAcquire(): Promise<boolean> {
    const value = this.entry()
    const current = await this.kv.get("leader")
    try {
      if (!isLive(current)) {
        this.leaderRevision = current === null ? await this.kv.create("leader", value) : await this.kv.update("leader", value, current.revision)
        return true
      }
      const entry = parse<LeaderEntry>(current.value)
      if (entry !== undefined && entry.holder !== this.holder && entry.until > Date.now()) {
        if (entry.presence === undefined || !(await isAbsent(this.presence.nc, entry.presence))) return false
      }
      this.leaderRevision = await this.kv.update("leader", value, current.revision)
      return true
    } catch {
      // Someone else took it in between.
      return false
    }
  }

  /** Extends the lease; false when it was lost (another broker holds it now). */
  async renew(): Promise<boolean> {
    const value = this.entry()
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
    const value = utf8(JSON.stringify({ seq, holder: this.holder, at: new Date().toISOString() }))
    this.positionRevision =
      this.positionRevision === 0 ? await this.kv.create("position", value) : await this.kv.update("position", value, this.positionRevision)
  }

  /** The saved position as any broker reads it (for the lag of a standby's metrics). */
  static async savedPosition(kv: Bucket): Promise<number> {
    const current = await kv.get("position")
    return isLive(current) ? (parse<{ seq: number }>(current.value)?.seq ?? 0) : 0
  }
}
