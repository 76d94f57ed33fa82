/**
 * The replay benchmark's measured process: replays a log exactly as `codeq replay --audit` does
 * (the library call, an audit tally per task) and reports events, time, CPU and peak RSS to its
 * parent over IPC. Arguments: url, stream prefix, subject root, detail, reader, batch.
 */
import { connect } from "nats"
// The audit path's own modules, not the replay index: an audit loads no event schema (Effect).
import { AuditTally } from "../replay/audit.js"
import { replayLog } from "../replay/replay.js"
import { wireTargetOf } from "../replay/source.js"

export interface ChildReport {
  readonly events: number
  readonly tasks: number
  readonly elapsedMs: number
  readonly cpuMs: number
  readonly maxRssKb: number
  readonly problems: number
  readonly reader: string
}

const main = async (): Promise<void> => {
  const [url = "", streamPrefix = "CODEQ", subjectRoot = "codeq", detail = "ids", reader = "auto", batch = "20000"] = process.argv.slice(2)
  const nc = await connect({ servers: url, noAsyncTraces: true, name: "codeq-replay-bench" })
  const tally = new AuditTally()
  const cpu = process.cpuUsage()
  const result = await replayLog(
    { nc, wire: wireTargetOf(nc, [url]) },
    { streamPrefix, subjectRoot },
    { detail: detail === "spans" ? "spans" : "ids", reader: reader === "nats" ? "nats" : "auto", batch: Number(batch) },
    (trace) => tally.add(trace)
  )
  const used = process.cpuUsage(cpu)
  await nc.close()
  const report: ChildReport = {
    events: result.events,
    tasks: result.tasks,
    elapsedMs: result.elapsedMs,
    cpuMs: (used.user + used.system) / 1000,
    maxRssKb: process.resourceUsage().maxRSS,
    problems: tally.problemCount,
    reader: result.reader
  }
  process.send?.(report, () => process.exit(0))
}

if (process.send !== undefined)
  main().catch((error: unknown) => {
    console.error(error)
    process.exit(1)
  })
