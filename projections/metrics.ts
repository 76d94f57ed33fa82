/**
 * The metrics projection: counts lifecycle events into the Prometheus counters. The command of
 * a task is remembered from its TaskCreated, or read from the log's first event after a restart.
 */
import { Effect } from "effect"
import type { StoredEvent } from "../src/domain/events.js"
import type { EventLog } from "../src/eventlog/EventLog.js"
import type { BrokerMetrics } from "../src/metrics/metrics.js"
import { ProjectionError, type Projection } from "./runtime.js"

const MAX_TRACKED = 200_000

export const metricsProjection = (log: EventLog, metrics: BrokerMetrics): Projection => {
  const commands = new Map<string, string>()
  const claimedAt = new Map<string, number>()
  const remember = <V>(map: Map<string, V>, key: string, value: V) => {
    if (map.size >= MAX_TRACKED) map.delete(map.keys().next().value ?? "")
    map.set(key, value)
  }
  const commandOf = async (stored: StoredEvent): Promise<string> => {
    const e = stored.event
    if (e.type === "TaskCreated") return e.command
    const known = commands.get(e.taskId)
    if (known !== undefined) return known
    const first = (await log.readTask(e.tenant, e.taskId)).events[0]?.event
    return first?.type === "TaskCreated" ? first.command : "unknown"
  }
  const count = async (stored: StoredEvent) => {
    const e = stored.event
    const command = await commandOf(stored)
    switch (e.type) {
      case "TaskCreated":
        remember(commands, e.taskId, command)
        return metrics.created.inc({ command })
      case "TaskClaimed":
        remember(claimedAt, e.taskId, Date.parse(e.at))
        return metrics.claimed.inc({ command })
      case "TaskLeaseExpired":
        return metrics.leaseExpired.inc({ command })
      case "TaskCompleted":
      case "TaskFailed": {
        metrics.completed.inc({ command, status: e.type === "TaskCompleted" ? "COMPLETED" : "FAILED" })
        const start = claimedAt.get(e.taskId)
        if (start !== undefined) metrics.latency.observe({ command }, Math.max(0, Date.parse(e.at) - start) / 1000)
        claimedAt.delete(e.taskId)
        return
      }
      case "TaskDeadLettered":
        claimedAt.delete(e.taskId)
        return metrics.deadLettered.inc({ command })
      case "WebhookDelivered":
        return metrics.webhooks.inc({ kind: "result", command, outcome: "delivered" })
      case "WebhookFailed":
        return metrics.webhooks.inc({ kind: "result", command, outcome: e.final ? "failed_final" : "failed" })
      default:
        return
    }
  }
  return {
    name: "metrics",
    handles: ["TaskCreated", "TaskClaimed", "TaskLeaseExpired", "TaskCompleted", "TaskFailed", "TaskDeadLettered", "WebhookDelivered", "WebhookFailed"],
    concurrency: 1,
    handle: (stored) =>
      Effect.tryPromise({
        try: () => count(stored),
        catch: (cause) => new ProjectionError({ projection: "metrics", message: "counting failed", cause })
      })
  }
}
