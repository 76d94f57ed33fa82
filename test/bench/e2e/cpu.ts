/**
 * Where a run's CPU goes: user + system time of each process of the run (nats-server, broker,
 * producer, workers; Redis for BullMQ), read before the first create and after the last
 * completion, per task. On two shared cores the sum is what bounds the end-to-end rate, so this is
 * the budget a faster broker has to win back, process by process.
 *
 * Read from `/proc/<pid>/stat` (Linux; fields 14 and 15, in clock ticks of 1/100 s — the USER_HZ
 * /proc reports in on every Linux architecture we run on); Redis reports its own through `INFO cpu`.
 */
import { readFile } from "node:fs/promises"

/** CPU seconds per process name at one moment; a process that could not be read is absent. */
export type CpuReading = Readonly<Record<string, number>>

export interface CpuPerTask {
  /** Microseconds of CPU per task, per process name. */
  readonly usPerTask: Readonly<Record<string, number>>
  /** Their sum. */
  readonly totalUsPerTask: number
}

const TICKS_PER_SECOND = 100

/** utime + stime of `pid` in seconds, undefined when it cannot be read (exited, not Linux). */
export const processCpuSeconds = async (pid: number | undefined): Promise<number | undefined> => {
  if (pid === undefined || pid <= 0) return undefined
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8")
    // The command name (field 2) is in parentheses and may hold spaces: count fields after its end.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    const utime = Number(fields[11])
    const stime = Number(fields[12])
    return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / TICKS_PER_SECOND : undefined
  } catch {
    return undefined
  }
}

/** Reads every named pid (and any extra readings, e.g. Redis's own) at once. */
export const readCpu = async (pids: ReadonlyArray<{ readonly name: string; readonly pid: number | undefined }>, extra: Promise<CpuReading> = Promise.resolve({})): Promise<CpuReading> => {
  const [values, more] = await Promise.all([Promise.all(pids.map(async ({ name, pid }) => [name, await processCpuSeconds(pid)] as const)), extra])
  const reading: Record<string, number> = { ...more }
  for (const [name, seconds] of values) if (seconds !== undefined) reading[name] = seconds
  return reading
}

/** CPU per task between two readings, for the processes read both times. */
export const cpuPerTask = (before: CpuReading, after: CpuReading, tasks: number): CpuPerTask => {
  const usPerTask: Record<string, number> = {}
  let total = 0
  for (const [name, end] of Object.entries(after)) {
    const start = before[name]
    if (start === undefined) continue
    const us = ((end - start) * 1e6) / Math.max(1, tasks)
    usPerTask[name] = us
    total += us
  }
  return { usPerTask, totalUsPerTask: total }
}

/** Redis's own CPU seconds (`INFO cpu`: used_cpu_user + used_cpu_sys) from its INFO text. */
export const redisCpuSeconds = (info: string): number | undefined => {
  const field = (name: string) => Number(new RegExp(`^${name}:([0-9.]+)`, "m").exec(info)?.[1])
  const total = field("used_cpu_user") + field("used_cpu_sys")
  return Number.isFinite(total) ? total : undefined
}
