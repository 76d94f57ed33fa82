/**
 * Driving one producer and W workers through a run, for codeq and BullMQ alike: workers go first
 * (so they are pulling when the first task exists), then the producer; the run is over when the
 * workers have completed as many tasks as the producer created, or it has stalled (no progress
 * for `stallMs`). Then the workers are told to stop and hand in every id they completed, and the
 * run is checked: each created task completed exactly once. A run with a loss, a duplicate or a
 * failed create is reported and never averaged.
 */
import { cpuPerTask, type CpuPerTask, type CpuReading } from "./cpu.js"
import type { ProducerResult, WorkerResult } from "./ipc.js"
import type { Proc } from "./processes.js"

/** Whether every created task completed exactly once. */
export interface ExactlyOnce {
  readonly created: number
  readonly createFailures: number
  readonly completions: number
  readonly lost: number
  readonly duplicates: number
  /** Completions of ids the producer never reported. */
  readonly unknown: number
  readonly clean: boolean
}

export const checkExactlyOnce = (producer: ProducerResult | undefined, workers: ReadonlyArray<WorkerResult>, expected: number): ExactlyOnce => {
  const counts = new Map<string, number>()
  for (const id of producer?.ids ?? []) counts.set(id, 0)
  let unknown = 0
  let completions = 0
  for (const worker of workers)
    for (const id of worker.completed) {
      completions++
      const seen = counts.get(id)
      if (seen === undefined) unknown++
      else counts.set(id, seen + 1)
    }
  let lost = 0
  let duplicates = 0
  for (const n of counts.values()) {
    if (n === 0) lost++
    else if (n > 1) duplicates += n - 1
  }
  const created = producer?.ids.length ?? 0
  // Failed creates, plus tasks never attempted (a producer that failed or was stopped early).
  const failed = producer?.failed ?? 0
  const createFailures = failed + Math.max(0, expected - created - failed)
  return { created, createFailures, completions, lost, duplicates, unknown, clean: created === expected && createFailures === 0 && lost === 0 && duplicates === 0 && unknown === 0 }
}

export interface LoadOutcome {
  readonly producer: ProducerResult | undefined
  readonly workers: ReadonlyArray<WorkerResult>
  /** Orchestrator clock when the completions reached the created count (or the stall was seen). */
  readonly allDoneAt: number
  readonly stalled: boolean
  /** The latest completion any worker reported (its own clock, wall time). */
  readonly workersLastAt: number
  readonly check: ExactlyOnce
  readonly errors: ReadonlyArray<string>
  /** CPU per completed task of the run's processes, from just before `go` to the moment the last completion was counted (`LoadOptions.readCpu`). */
  readonly cpu: CpuPerTask | undefined
}

export interface LoadOptions {
  /** Tasks the producer was asked to create. */
  readonly expected: number
  /** No progress for this long ends the run as stalled. */
  readonly stallMs: number
  /** Called the moment the last completion is counted (the catch-up clock starts there). */
  readonly onAllDone?: () => void
  /** Other processes the run needs (the broker): one that exits ends the run with an error. */
  readonly watch?: ReadonlyArray<Proc>
  /** Reads the run's processes' CPU time: before `go`, and at the end before anyone is told to stop (all still there to read). */
  readonly readCpu?: () => Promise<CpuReading>
}

const RESULT_TIMEOUT_MS = 120_000

/** Runs the load to its end; the processes must all have said `ready`. */
export const driveLoad = async (producer: Proc, workers: ReadonlyArray<Proc>, options: LoadOptions): Promise<LoadOutcome> => {
  const done = workers.map(() => 0)
  let created = 0
  let producerResult: ProducerResult | undefined
  let producerError: Error | undefined
  const offs = workers.map((worker, i) =>
    worker.onMessage((message) => {
      if (message.type === "progress") done[i] = message.done
    })
  )
  offs.push(
    producer.onMessage((message) => {
      if (message.type === "progress") created = message.done
    })
  )
  const produced = producer.waitFor("result", 24 * 3_600_000).then(
    (message) => {
      if (message.result.kind === "producer") producerResult = message.result
    },
    (error: unknown) => {
      producerError = error instanceof Error ? error : new Error(String(error))
    }
  )
  const cpuAtStart = await options.readCpu?.()
  for (const worker of workers) worker.send({ type: "go" })
  producer.send({ type: "go" })

  let progressAt = Date.now()
  let lastSeen = -1
  let stalled = false
  for (;;) {
    const completed = done.reduce((sum, n) => sum + n, 0)
    const target = producerResult?.ids.length ?? options.expected
    if ((producerResult !== undefined || producerError !== undefined) && completed >= target) break
    if (producerResult === undefined && producerError === undefined && completed >= options.expected) break
    if (producerError !== undefined && completed >= created) break
    if (completed + created !== lastSeen) {
      lastSeen = completed + created
      progressAt = Date.now()
    } else if (Date.now() - progressAt > options.stallMs) {
      stalled = true
      break
    }
    const gone = [...workers, ...(options.watch ?? [])].filter((proc) => !proc.running)
    if (gone.length > 0) throw new Error(`exited during the run: ${gone.map((proc) => `${proc.name} (log ${proc.logFile})`).join(", ")}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  const allDoneAt = Date.now()
  options.onAllDone?.()
  const cpuAtEnd = await options.readCpu?.()

  producer.send({ type: "stop" })
  for (const worker of workers) worker.send({ type: "stop" })
  const results = await Promise.all(workers.map((worker) => worker.waitFor("result", RESULT_TIMEOUT_MS)))
  // The timer is cleared once the producer answers: left running, it kept the bench process alive
  // for two minutes after its table.
  let resultTimer: NodeJS.Timeout | undefined
  await Promise.race([produced, new Promise((resolve) => (resultTimer = setTimeout(resolve, RESULT_TIMEOUT_MS)))])
  clearTimeout(resultTimer)
  for (const off of offs) off()
  const workerResults = results.map((message) => message.result).filter((result): result is WorkerResult => result.kind === "worker")
  const errors = [
    ...(producerError !== undefined ? [`producer: ${producerError.message}`] : []),
    ...(producerResult?.errors ?? []).map((e) => `producer: ${e}`),
    ...workerResults.flatMap((result, i) => result.errors.map((e) => `${workers[i]?.name ?? "worker"}: ${e}`)),
    ...(stalled ? [`stalled: no progress for ${options.stallMs} ms`] : [])
  ]
  const check = checkExactlyOnce(producerResult, workerResults, options.expected)
  return {
    producer: producerResult,
    workers: workerResults,
    allDoneAt,
    stalled,
    workersLastAt: Math.max(0, ...workerResults.map((result) => result.lastAt)),
    check,
    errors,
    cpu: cpuAtStart === undefined || cpuAtEnd === undefined ? undefined : cpuPerTask(cpuAtStart, cpuAtEnd, check.created - check.lost)
  }
}
