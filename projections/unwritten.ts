/**
 * The read model's unwritten (dirty) documents (docs.ts), kept so that what a flush and the saved
 * position need costs what is written, not what is held (see docs.ts on the backlog that showed it).
 *
 * - **In order**: documents in the order they became unwritten, which is also ascending
 *   `dirtyFrom` since events are applied in log order — the oldest first for a flush, the lowest
 *   first for the saved position.
 * - **Late**: the few that would break that order (a refold, a failed write), walked whole.
 * - **Due**: those of tasks that are over, written at the next flush whatever their age.
 *
 * Each is reckoned at a size (`pending`: as last written, plus the bodies of the events since), and
 * the sum bounds what a backlog may hold unwritten.
 */

/** What a document must carry to be kept here. */
export interface UnwrittenDoc {
  readonly key: string
  /** First sequence not yet written (0: written, not here). */
  dirtyFrom: number
  /** When it became unwritten (ms). */
  dirtyAt: number
  /** Bytes of its JSON as last written or read (0: not yet). */
  bytes: number
  /** While unwritten, the bytes its write is reckoned at. */
  pending: number
}

/** A document taken out to be written: what puts it back if the write fails. */
export interface Taken {
  readonly dirtyFrom: number
  readonly pending: number
}

export class Unwritten<D extends UnwrittenDoc> {
  private readonly inOrder = new Map<string, D>()
  /** `dirtyFrom` of the last document appended to `inOrder`. */
  private lastFrom = 0
  private readonly lateOnes = new Map<string, D>()
  private readonly dueOnes = new Map<string, D>()
  private reckoned = 0

  /** Unwritten documents. */
  get size(): number {
    return this.inOrder.size + this.lateOnes.size
  }

  /** The sum of their `pending`. */
  get bytes(): number {
    return this.reckoned
  }

  /** Oldest first; a walk may stop at the first one young enough. */
  ordered(): IterableIterator<D> {
    return this.inOrder.values()
  }

  late(): IterableIterator<D> {
    return this.lateOnes.values()
  }

  due(): IterableIterator<D> {
    return this.dueOnes.values()
  }

  /**
   * `doc` changed at `seq`: unwritten from there, reckoned at what it was last written at (it is
   * rewritten whole) unless it already was. True when it was not unwritten before.
   */
  mark(doc: D, seq: number): boolean {
    if (doc.dirtyFrom !== 0) return false
    this.reckon(doc, doc.bytes)
    doc.dirtyFrom = seq
    doc.dirtyAt = Date.now()
    if (this.inOrder.size > 0 && seq < this.lastFrom) this.lateOnes.set(doc.key, doc)
    else {
      this.inOrder.set(doc.key, doc)
      this.lastFrom = seq
    }
    return true
  }

  /** Adds `bytes` to what `doc` is reckoned at. */
  reckon(doc: D, bytes: number): void {
    doc.pending += bytes
    this.reckoned += bytes
  }

  /** `doc`'s task is over: written at the next flush. */
  markDue(doc: D): void {
    this.dueOnes.set(doc.key, doc)
  }

  /** Takes `doc` out (being written, or given up): no longer unwritten. */
  take(doc: D): Taken {
    const taken = { dirtyFrom: doc.dirtyFrom, pending: doc.pending }
    this.reckon(doc, -doc.pending)
    doc.dirtyFrom = 0
    this.inOrder.delete(doc.key)
    this.lateOnes.delete(doc.key)
    this.dueOnes.delete(doc.key)
    return taken
  }

  /**
   * A write of `doc` failed: unwritten again from where it was taken (unless a newer change has
   * made it unwritten from earlier), out of order, reckoned again at what was taken (over what a
   * change since added: an over-estimate). True when it was put back.
   */
  putBack(doc: D, taken: Taken): boolean {
    if (doc.dirtyFrom !== 0 && doc.dirtyFrom <= taken.dirtyFrom) return false
    this.reckon(doc, taken.pending)
    doc.dirtyFrom = taken.dirtyFrom
    this.inOrder.delete(doc.key)
    this.lateOnes.set(doc.key, doc)
    return true
  }

  /** The lowest `dirtyFrom` (Infinity when none). */
  lowest(): number {
    // `inOrder` ascends: its first is its lowest.
    let lowest = this.inOrder.values().next().value?.dirtyFrom ?? Number.POSITIVE_INFINITY
    for (const doc of this.lateOnes.values()) lowest = Math.min(lowest, doc.dirtyFrom)
    return lowest
  }
}
