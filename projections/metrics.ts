/**
 * The metrics projection: counts lifecycle events into the Prometheus counters, labelled with the
 * task's command from the folded state. Processing latency runs from the claim to the result.
 */
import type { BrokerMetrics } from "../src/metrics/metrics.js"
import type { Sink } from "./runtime.js"

/** Claims remembered for the latency histogram at most (the oldest are forgotten first). */
const MAX_TRACKED = 100_000

export const metricsProjection = (metrics: BrokerMetrics): Sink => {
  const claimedAt = new Map<string, number>()
  return {
    name: "metrics",
    apply: ({ stored, after, replayed }) => {
      const e = stored.event
      if (replayed) return undefined
      const command = after?.command ?? "unknown"
      switch (e.type) {
        case "TaskCreated":
          metrics.created.inc({ command })
          break
        case "TaskClaimed":
          if (claimedAt.size >= MAX_TRACKED) claimedAt.delete(claimedAt.keys().next().value ?? "")
          claimedAt.set(e.taskId, Date.parse(e.at))
          metrics.claimed.inc({ command })
          break
        case "TaskLeaseExpired":
          metrics.leaseExpired.inc({ command })
          break
        case "TaskCompleted":
        case "TaskFailed": {
          metrics.completed.inc({ command, status: e.type === "TaskCompleted" ? "COMPLETED" : "FAILED" })
          const start = claimedAt.get(e.taskId)
          if (start !== undefined) metrics.latency.observe({ command }, Math.max(0, Date.parse(e.at) - start) / 1000)
          claimedAt.delete(e.taskId)
          break
        }
        case "TaskDeadLettered":
          claimedAt.delete(e.taskId)
          metrics.deadLettered.inc({ command })
          break
        case "WebhookDelivered":
          metrics.webhooks.inc({ kind: "result", command, outcome: "delivered" })
          break
        case "WebhookFailed":
          metrics.webhooks.inc({ kind: "result", command, outcome: e.final ? "failed_final" : "failed" })
          break
        default:
          break
      }
      return undefined
    }
  }
}
