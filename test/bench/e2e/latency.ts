/**
 * Latency from the log's own clock: after a run, the task events are read back from the events
 * stream (`<prefix>_EVENTS`, subjects `<root>.evt.<tenant>.<taskId>`) with an ordered consumer,
 * and per task the JetStream timestamps of TaskCreated → first TaskClaimed and TaskCreated →
 * TaskCompleted are differenced. The `Codeq-Event` header names the event type; the payload is
 * never decoded, so the bench does not depend on the event schema. The stream's state also gives
 * the time of its last stored event: the end of a codeq run, read from the log rather than from a
 * worker's clock.
 */
import { writeFileSync } from "node:fs"
import type { NatsConnection } from "nats"

/** The header that names an event's type (DESIGN §2), read without decoding the body. */
export const EVENT_TYPE_HEADER = "Codeq-Event"

export interface Percentiles {
  readonly count: number
  readonly p50: number
  readonly p95: number
  readonly p99: number
  readonly max: number
}

/** Nearest-rank percentiles of `values` (milliseconds). */
export const percentiles = (values: ReadonlyArray<number>): Percentiles | undefined => {
  if (values.length === 0) return undefined
  const sorted = [...values].sort((a, b) => a - b)
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? 0
  return { count: sorted.length, p50: at(50), p95: at(95), p99: at(99), max: sorted[sorted.length - 1] ?? 0 }
}

export interface LogLatency {
  readonly createdToClaimed: Percentiles | undefined
  readonly createdToCompleted: Percentiles | undefined
  /** Tasks measured (created after the warm-up); tasks missing a claim or a completion are counted apart. */
  readonly tasks: number
  /** Tasks created during the warm-up, left out. */
  readonly warmup: number
  readonly withoutClaim: number
  readonly withoutCompletion: number
  readonly events: number
}

interface TaskTimes {
  created?: number
  claimed?: number
  completed?: number
}

const NANOS_PER_MS = 1_000_000

/**
 * Reads every event of the stream and differences the timestamps per task subject, leaving out
 * tasks created in the first `warmupMs` after the first create.
 */
export const readLogLatency = async (nc: NatsConnection, stream: string, subjectRoot: string, warmupMs = 0, timeoutMs = 120_000): Promise<LogLatency> => {
  const jsm = await nc.jetstreamManager()
  const total = (await jsm.streams.info(stream)).state.messages
  const times = new Map<string, TaskTimes>()
  let events = 0
  if (total > 0) {
    // One filter subject as a string: nats-server 2.9 knows no multi-filter consumers, and an
    // ordered consumer asked for one there never delivers.
    const consumer = await nc.jetstream().consumers.get(stream, { filterSubjects: `${subjectRoot}.evt.>` })
    let expired: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_, reject) => {
      expired = setTimeout(() => reject(new Error(`log read-back incomplete after ${timeoutMs} ms (${events} of ${total} events)`)), timeoutMs)
    })
    const messages = await Promise.race([consumer.consume({ max_messages: 1024 }), deadline])
    const read = async () => {
      for await (const m of messages) {
        events++
        const type = m.headers?.get(EVENT_TYPE_HEADER) ?? ""
        const at = m.info.timestampNanos / NANOS_PER_MS
        let task = times.get(m.subject)
        if (task === undefined) times.set(m.subject, (task = {}))
        if (type === "TaskCreated") task.created ??= at
        else if (type === "TaskClaimed") task.claimed ??= at
        else if (type === "TaskCompleted") task.completed ??= at
        if (m.info.pending === 0 || events >= total) break
      }
    }
    try {
      await Promise.race([read(), deadline])
    } finally {
      clearTimeout(expired)
      // STACK: stop the messages, or closing the connection afterwards hangs.
      messages.stop()
    }
  }
  const dump = process.env["E2E_LATENCY_DUMP"]
  if (dump !== undefined && dump !== "") writeTimes(dump, times)
  const claimed: Array<number> = []
  const completed: Array<number> = []
  let tasks = 0
  let warmup = 0
  let withoutClaim = 0
  let withoutCompletion = 0
  let first = Number.POSITIVE_INFINITY
  for (const task of times.values()) if (task.created !== undefined && task.created < first) first = task.created
  for (const task of times.values()) {
    if (task.created === undefined) continue
    if (task.created < first + warmupMs) {
      warmup++
      continue
    }
    tasks++
    if (task.claimed === undefined) withoutClaim++
    else claimed.push(task.claimed - task.created)
    if (task.completed === undefined) withoutCompletion++
    else completed.push(task.completed - task.created)
  }
  return { createdToClaimed: percentiles(claimed), createdToCompleted: percentiles(completed), tasks, warmup, withoutClaim, withoutCompletion, events }
}

/**
 * Writes each task's log times as CSV (`created,claimed,completed`, ms since the epoch, empty when
 * missing), for looking at the tail: `E2E_LATENCY_DUMP=<file>` in the bench's environment.
 */
const writeTimes = (file: string, times: ReadonlyMap<string, TaskTimes>) => {
  const rows = [...times.values()].map((t) => `${t.created ?? ""},${t.claimed ?? ""},${t.completed ?? ""}`)
  writeFileSync(file, `created,claimed,completed\n${rows.join("\n")}\n`)
}

/** Wall time (ms) of the last message stored in a stream, from its state; undefined when empty. */
export const lastStoredAt = async (nc: NatsConnection, stream: string): Promise<number | undefined> => {
  const state = (await (await nc.jetstreamManager()).streams.info(stream)).state
  if (state.messages === 0) return undefined
  const parsed = Date.parse(state.last_ts)
  return Number.isNaN(parsed) ? undefined : parsed
}
