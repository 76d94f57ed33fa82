/**
 * Where a task's create→claimed time goes, hop by hop (`--hops`, latency runs only). A connection
 * of the bench's own subscribes to every subject of the run's private server and stamps, by its
 * own clock, each TaskCreated, claim message and TaskClaimed as it is published, and each
 * TaskCreated and claim message as JetStream delivers it: a delivery reaches a subscriber of `>`
 * through the consumer's inbox, under the message's own subject, with a `$JS.ACK` reply. Per task,
 * four steps:
 *
 * - `fed`: the create stored and delivered to the broker's projections;
 * - `broker`: from that delivery to the broker's claim message;
 * - `dispatched`: the claim message stored and delivered to a worker;
 * - `worker`: from that delivery to the worker's TaskClaimed.
 *
 * The observer receives every message of the run a second time, and on a small machine it takes
 * CPU from the processes it watches: a diagnostic of where the time goes, not the latency itself,
 * which the log's own timestamps give (latency.ts). Payloads are never kept: a claim message's
 * task id is all that is read from it.
 */
import { connect, type Msg, type NatsConnection } from "nats"
import { EVENT_TYPE_HEADER, percentiles, type Percentiles } from "./latency.js"

/** The bench's own connection: taken out of the server's counters per task. */
export const HOPS_CONNECTION = "bench-hops"

/** Stamps of a task in ms, in this order (NaN until seen). */
const CREATED_PUBLISHED = 0
const CREATED_DELIVERED = 1
const CLAIM_PUBLISHED = 2
const CLAIM_DELIVERED = 3
const CLAIMED_PUBLISHED = 4
type Stamps = [number, number, number, number, number]

/** Each hop: from which stamp to which. */
const HOPS = {
  fed: [CREATED_PUBLISHED, CREATED_DELIVERED],
  broker: [CREATED_DELIVERED, CLAIM_PUBLISHED],
  dispatched: [CLAIM_PUBLISHED, CLAIM_DELIVERED],
  worker: [CLAIM_DELIVERED, CLAIMED_PUBLISHED]
} as const
export type HopStep = keyof typeof HOPS
export const HOP_STEPS = Object.keys(HOPS) as ReadonlyArray<HopStep>

export interface HopReport {
  /** Tasks seen at every stamp, created after the warm-up. */
  readonly tasks: number
  readonly steps: Readonly<Record<HopStep, Percentiles | undefined>>
}

const decoder = new TextDecoder()
const now = () => performance.timeOrigin + performance.now()

export interface HopWatch {
  /** Stops watching and reports the steps of the tasks created after `warmupMs` from the first create. */
  finish(warmupMs: number): Promise<HopReport>
}

export const watchHops = async (url: string, subjectRoot: string): Promise<HopWatch> => {
  const nc: NatsConnection = await connect({ servers: url, name: HOPS_CONNECTION, noAsyncTraces: true })
  const events = `${subjectRoot}.evt.`
  const claims = `${subjectRoot}.claim.`
  const tasks = new Map<string, Stamps>()
  const stamp = (taskId: string, which: number, at: number) => {
    let stamps = tasks.get(taskId)
    if (stamps === undefined) tasks.set(taskId, (stamps = [NaN, NaN, NaN, NaN, NaN]))
    // The first of each: a redelivery or a second claim does not move it.
    if (Number.isNaN(stamps[which])) stamps[which] = at
  }
  const onMessage = (msg: Msg) => {
    const at = now()
    const delivered = msg.reply?.startsWith("$JS.ACK.") === true
    if (msg.subject.startsWith(events)) {
      const type = msg.headers?.get(EVENT_TYPE_HEADER)
      const taskId = msg.subject.slice(msg.subject.lastIndexOf(".") + 1)
      if (type === "TaskCreated") stamp(taskId, delivered ? CREATED_DELIVERED : CREATED_PUBLISHED, at)
      else if (type === "TaskClaimed" && !delivered) stamp(taskId, CLAIMED_PUBLISHED, at)
    } else if (msg.subject.startsWith(claims)) {
      let taskId: unknown
      try {
        taskId = (JSON.parse(decoder.decode(msg.data)) as { taskId?: unknown }).taskId
      } catch {
        return
      }
      if (typeof taskId === "string") stamp(taskId, delivered ? CLAIM_DELIVERED : CLAIM_PUBLISHED, at)
    }
  }
  nc.subscribe(">", { callback: (_err, msg) => onMessage(msg) })
  await nc.flush()
  return {
    finish: async (warmupMs) => {
      await nc.close()
      const complete = [...tasks.values()].filter((s) => s.every((t) => !Number.isNaN(t)))
      const first = complete.reduce((min, s) => Math.min(min, s[CREATED_PUBLISHED]), Infinity)
      const measured = complete.filter((s) => s[CREATED_PUBLISHED] >= first + warmupMs)
      const step = ([from, to]: readonly [number, number]) => percentiles(measured.map((s) => (s[to] ?? NaN) - (s[from] ?? NaN)))
      const steps = Object.fromEntries(HOP_STEPS.map((hop) => [hop, step(HOPS[hop])])) as Record<HopStep, Percentiles | undefined>
      return { tasks: measured.length, steps }
    }
  }
}
