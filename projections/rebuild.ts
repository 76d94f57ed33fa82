/**
 * Rebuilding a derived projection: drop its state (key-value bucket) and its durable consumer,
 * then run it from the first event until it has caught up with the log as it was when the rebuild
 * started, reporting progress. Only projections whose state is derived and idempotent can be
 * rebuilt (task-state, dead-letters); the dispatcher and webhooks act on the world and are not.
 */
import { Effect, Fiber } from "effect"
import type { KV, NatsConnection } from "nats"
import type { EventLog } from "../src/eventlog/EventLog.js"
import { deadLetterBucket, eventsStream, taskStateBucket, type Naming } from "../streams/definitions.js"
import { deadLetters } from "./deadLetters.js"
import { durableName, runProjection, type Projection } from "./runtime.js"
import { taskState } from "./taskState.js"
import { PipelinedKv } from "../src/eventlog/kv.js"
import { PipelinedPublisher } from "../src/eventlog/pipeline.js"

interface Rebuildable {
  readonly bucket: (n: Naming) => string
  readonly make: (kv: KV, log: EventLog, publisher: PipelinedPublisher) => Projection
}

export const REBUILDABLE: Readonly<Record<string, Rebuildable>> = {
  "task-state": { bucket: taskStateBucket, make: (_kv, log, publisher) => taskState(new PipelinedKv(publisher, taskStateBucket(log.naming)), log) },
  "dead-letters": { bucket: deadLetterBucket, make: (kv, log) => deadLetters(log, kv) }
}

export interface RebuildProgress {
  readonly handled: number
  readonly total: number
}

const isNotFound = (error: unknown) => /not found/i.test(String(error))

/** Rebuilds `name` and resolves with the number of events replayed. Stop brokers running it first. */
export const rebuildProjectionState = async (
  nc: NatsConnection,
  log: EventLog,
  name: string,
  options: { readonly replicas?: number; readonly onProgress?: (progress: RebuildProgress) => void } = {}
): Promise<number> => {
  const target = REBUILDABLE[name]
  if (target === undefined) throw new Error(`projection ${name} cannot be rebuilt; rebuildable: ${Object.keys(REBUILDABLE).join(", ")}`)
  const naming = log.naming
  const jsm = await nc.jetstreamManager()
  const stream = eventsStream(naming)
  await jsm.consumers.delete(stream, durableName(name)).catch((error: unknown) => {
    if (!isNotFound(error)) throw error
  })
  const bucket = target.bucket(naming)
  await jsm.streams.delete(`KV_${bucket}`).catch((error: unknown) => {
    if (!isNotFound(error)) throw error
  })
  const kv = await nc.jetstream().views.kv(bucket, { replicas: options.replicas ?? 1 })
  const total = (await jsm.streams.info(stream)).state.last_seq
  let handled = 0
  const publisher = new PipelinedPublisher(nc)
  const fiber = Effect.runFork(
    runProjection(nc, target.make(kv, log, publisher), {
      naming,
      onHandled: (_projection, seq) => {
        handled = Math.max(handled, seq)
      }
    })
  )
  try {
    for (;;) {
      // The consumer appears once the projection has started.
      const info = await jsm.consumers.info(stream, durableName(name)).catch(() => undefined)
      options.onProgress?.({ handled: Math.min(handled, total), total })
      if (info !== undefined && info.ack_floor.stream_seq >= total && info.num_ack_pending === 0) break
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
  } finally {
    await Effect.runPromise(Fiber.interrupt(fiber))
    publisher.close()
  }
  options.onProgress?.({ handled: total, total })
  return total
}
