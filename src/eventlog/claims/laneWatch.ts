/**
 * Which claim lanes just received work, for the claim sources of one connection. Every dispatched
 * claim is also seen by a core subscription on its subject, which names the lane; one subscription
 * per tenant, shared by every source of that tenant and dropped with the last of them — so the
 * number of subscriptions never grows with the commands a claim names.
 */
import type { NatsConnection, Subscription } from "nats"
import { claimSubjects, type Naming } from "../../../streams/definitions.js"

/** Told the command and lane of each claim message dispatched for the tenant. */
export type LaneListener = (command: string, lane: number) => void

export class LaneWatch {
  private readonly tenants = new Map<string, { readonly sub: Subscription; readonly listeners: Set<LaneListener> }>()

  constructor(
    private readonly nc: NatsConnection,
    private readonly naming: Naming
  ) {}

  /** Calls `listener` for every claim dispatched to `tenant` until the returned function is called. */
  watch(tenant: string, listener: LaneListener): () => void {
    let entry = this.tenants.get(tenant)
    if (entry === undefined) {
      const listeners = new Set<LaneListener>()
      const sub = this.nc.subscribe(claimSubjects(this.naming, tenant), {
        callback: (_err, msg) => {
          const parts = msg.subject.split(".")
          const command = parts[parts.length - 2] ?? ""
          const lane = Number(parts[parts.length - 1])
          for (const each of listeners) each(command, lane)
        }
      })
      entry = { sub, listeners }
      this.tenants.set(tenant, entry)
    }
    const current = entry
    current.listeners.add(listener)
    return () => {
      current.listeners.delete(listener)
      if (current.listeners.size === 0 && this.tenants.get(tenant) === current) {
        this.tenants.delete(tenant)
        current.sub.unsubscribe()
      }
    }
  }

  /** Tenants watched right now (one subscription each). */
  get size(): number {
    return this.tenants.size
  }

  close(): void {
    for (const { sub } of this.tenants.values()) sub.unsubscribe()
    this.tenants.clear()
  }
}
