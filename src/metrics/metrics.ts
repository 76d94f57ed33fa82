/**
 * Prometheus metrics (DESIGN §4) with codeQ's series names. Event counters are fed by the metrics
 * projection; gauges (queue depth per lane, dead-letter depth, projection lag) are read from
 * JetStream when scraped, so they are right whichever broker instance answers. The exposition
 * also carries prom-client's default Node process metrics under their standard names
 * (`process_cpu_seconds_total`, `process_resident_memory_bytes`, `nodejs_eventloop_lag_seconds`,
 * `nodejs_heap_size_used_bytes`, …), unprefixed so stock Node.js dashboards and alerts work.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client"
import type { Connection } from "../eventlog/connection.js"
import { liveEntries, type Bucket } from "../eventlog/kv.js"
import { lastSequence, subjectCounts } from "../eventlog/streams.js"
import { claimSubjects, claimsStream, eventsStream, type Naming } from "../../streams/definitions.js"

export const PROJECTIONS = ["dispatcher", "dead-letters", "task-state", "webhooks", "metrics"] as const

let processMetrics: Registry | undefined

/**
 * The process's default metrics, in a registry of their own made once per process: they describe
 * the process, not a broker, and each collector set starts its own event-loop and GC observers.
 */
const processRegistry = (): Registry => {
  if (processMetrics === undefined) {
    processMetrics = new Registry()
    collectDefaultMetrics({ register: processMetrics })
  }
  return processMetrics
}

export class BrokerMetrics {
  readonly registry = new Registry()
  readonly created = new Counter({ name: "codeq_task_created_total", help: "Tasks created", labelNames: ["command"], registers: [this.registry] })
  readonly claimed = new Counter({ name: "codeq_task_claimed_total", help: "Claims (deliveries) recorded", labelNames: ["command"], registers: [this.registry] })
  readonly completed = new Counter({ name: "codeq_task_completed_total", help: "Tasks ended by a result", labelNames: ["command", "status"], registers: [this.registry] })
  readonly leaseExpired = new Counter({ name: "codeq_lease_expired_total", help: "Leases that ran out and were re-claimed", labelNames: ["command"], registers: [this.registry] })
  readonly deadLettered = new Counter({ name: "codeq_task_dead_lettered_total", help: "Tasks moved to the dead-letter queue", labelNames: ["command"], registers: [this.registry] })
  readonly webhooks = new Counter({ name: "codeq_webhook_deliveries_total", help: "Webhook delivery attempts", labelNames: ["kind", "command", "outcome"], registers: [this.registry] })
  readonly latency = new Histogram({
    name: "codeq_task_processing_latency_seconds",
    help: "From claim to result",
    labelNames: ["command"],
    buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800],
    registers: [this.registry]
  })
  readonly quarantined = new Counter({ name: "codeq_events_quarantined_total", help: "Undecodable events skipped by a projection", labelNames: ["projection"], registers: [this.registry] })
  private readonly depth = new Gauge({ name: "codeq_queue_depth", help: "Claim messages waiting or in flight", labelNames: ["tenant", "command", "lane"], registers: [this.registry] })
  private readonly dlqDepth = new Gauge({ name: "codeq_dlq_depth", help: "Dead-lettered tasks", labelNames: ["tenant", "command"], registers: [this.registry] })
  private readonly lag = new Gauge({ name: "codeq_projection_lag_events", help: "Events in the log a projection has not finished (its effects settled, its writes made)", labelNames: ["projection"], registers: [this.registry] })
  private readonly exportFailures = new Counter({ name: "codeq_trace_export_failures_total", help: "Failed span export calls", registers: [this.registry] })
  private exportFailuresSeen = 0
  /** What `/metrics` shows: the broker's series and the process's. */
  private readonly exposition = Registry.merge([this.registry, processRegistry()])

  constructor(
    private readonly nc: Connection,
    private readonly naming: Naming,
    private readonly dlq: Bucket | undefined,
    private readonly traceExportFailures: () => number = () => 0,
    /** Per projection, the sequence up to which every event is done. */
    private readonly projectionPositions: () => Promise<ReadonlyMap<string, number>> = () => Promise.resolve(new Map())
  ) {}

  /** Reads the gauges from JetStream, then renders every series in the text format. */
  async render(): Promise<string> {
    await this.collect().catch(() => undefined)
    return this.exposition.metrics()
  }

  get contentType(): string {
    return this.registry.contentType
  }

  private async collect(): Promise<void> {
    const claims = await subjectCounts(this.nc, claimsStream(this.naming), claimSubjects(this.naming))
    this.depth.reset()
    for (const [subject, count] of Object.entries(claims)) {
      const [, , tenant = "", command = "", lane = ""] = subject.split(".")
      this.depth.set({ tenant, command, lane }, count)
    }
    if (this.dlq !== undefined) {
      this.dlqDepth.reset()
      const counts = new Map<string, number>()
      for (const key of (await liveEntries(this.dlq, ">", { headersOnly: true })).keys()) {
        const [tenant = "", command = ""] = key.split(".")
        counts.set(`${tenant}\u0000${command}`, (counts.get(`${tenant}\u0000${command}`) ?? 0) + 1)
      }
      for (const [key, count] of counts) {
        const [tenant = "", command = ""] = key.split("\u0000")
        this.dlqDepth.set({ tenant, command }, count)
      }
    }
    const last = await lastSequence(this.nc, eventsStream(this.naming))
    const positions = await this.projectionPositions()
    for (const projection of PROJECTIONS) {
      const position = positions.get(projection)
      if (position !== undefined) this.lag.set({ projection }, Math.max(0, last - position))
    }
    const failures = this.traceExportFailures()
    if (failures > this.exportFailuresSeen) this.exportFailures.inc(failures - this.exportFailuresSeen)
    this.exportFailuresSeen = Math.max(this.exportFailuresSeen, failures)
  }
}
