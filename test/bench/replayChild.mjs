// @ts-check
/**
 * The replay benchmark's measured process: replays a log exactly as `codeq replay --audit` does
 * (the library call, an audit tally per task) and reports events, time, CPU and peak RSS to its
 * parent over IPC. Arguments: url, stream prefix, subject root, detail, reader, batch. Detail
 * `read` only reads the log into records (no task, no audit): the ceiling the rest runs under.
 *
 * Plain JavaScript run by Node itself on the build in dist/ — the code `codeq replay` runs, with
 * no test loader in the process, and its heap setting (tuneHeapForReplay) — and the audit path's
 * own modules, not the replay index: an audit loads no event schema.
 */
import { connect } from "nats"
import v8 from "node:v8"
if (process.env.SEMI) v8.setFlagsFromString(process.env.SEMI)

const dist = (path) => new URL(`../../dist/${path}`, import.meta.url).href
const { AuditTally } = await import(dist("src/replay/audit.js"))
const { replayLog } = await import(dist("src/replay/replay.js"))
const { openSource, wireTargetOf } = await import(dist("src/eventlog/window/source.js"))
const { AUDIT_BODIES } = await import(dist("src/replay/tasks.js"))
const { tuneHeapForReplay } = await import(dist("src/replay/heap.js"))

/** Reads the whole log into records and drops them: what reading alone costs. */
const readOnly = async (conn, naming, batch) => {
  const started = Date.now()
  const opened = await openSource(conn, naming, { filterSubject: `${naming.subjectRoot}.evt.>`, start: { seq: 1 }, batch, bodies: AUDIT_BODIES })
  let events = 0
  try {
    while (events < opened.pendingAtStart && opened.source.pending !== 0) events += (await opened.source.next(5_000)).length
  } finally {
    await opened.source.close()
    await opened.remove()
  }
  return { events, elapsedMs: Date.now() - started, reader: opened.reader }
}

const main = async () => {
  const [url = "", streamPrefix = "CODEQ", subjectRoot = "codeq", detail = "ids", reader = "auto", batch = "20000"] = process.argv.slice(2)
  // What `codeq replay` does first.
  tuneHeapForReplay()
  const nc = await connect({ servers: url, noAsyncTraces: true, name: "codeq-replay-bench" })
  const tally = new AuditTally()
  const cpu = process.cpuUsage()
  const conn = reader === "nats" ? { nc } : { nc, wire: wireTargetOf(nc, [url]) }
  const result =
    detail === "read"
      ? { ...(await readOnly(conn, { streamPrefix, subjectRoot }, Number(batch))), tasks: 0 }
      : await replayLog(conn, { streamPrefix, subjectRoot }, { detail: detail === "spans" ? "spans" : "ids", batch: Number(batch) }, (trace) => tally.add(trace))
  const used = process.cpuUsage(cpu)
  await nc.close()
  // The ChildReport of replay.ts.
  const report = {
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
  main().catch((error) => {
    console.error(error)
    process.exit(1)
  })
