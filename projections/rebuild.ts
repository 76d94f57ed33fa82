/**
 * Rebuilding a derived projection: drop its state (key-value bucket), then fold the log into it
 * from the first event until it has caught up with the log as it was when the rebuild started,
 * reporting progress. The same runtime and fold as the live projections, with only the rebuilt
 * projection's writes switched on. Only projections whose state is derived and idempotent can be
 * rebuilt (task-state, dead-letters); the dispatcher and webhooks act on the world and are not.
 * Rebuilding task-state rebuilds the open-task index with it, and marks it ready once done.
 */
import { EventFeed } from "../src/eventlog/feed.js"
import type { EventLog } from "../src/eventlog/EventLog.js"
import { PipelinedKv, deleteBucket, openBucket, type Bucket } from "../src/eventlog/kv.js"
import type { Connection } from "../src/eventlog/connection.js"
import { lastSequence } from "../src/eventlog/streams.js"
import { PipelinedPublisher } from "../src/eventlog/pipeline.js"
import { deadLetterBucket, eventsStream, openTaskBucket, taskStateBucket, type Naming } from "../streams/definitions.js"
import { OPEN_INDEX_READY_KEY } from "../src/eventlog/openTasks.js"
import { utf8 } from "../src/eventlog/utf8.js"
import { deadLetters } from "./deadLetters.js"
import { TaskDocs } from "./docs.js"
import { ProjectionRuntime } from "./runtime.js"

export const REBUILDABLE: Readonly<Record<string, { readonly bucket: (n: Naming) => string }>> = {
  "task-state": { bucket: taskStateBucket },
  "dead-letters": { bucket: deadLetterBucket }
}

export interface RebuildProgress {
  readonly handled: number
  readonly total: number
}

/** Rebuilds `name` and resolves with the number of events replayed. Stop the brokers first. */
export const rebuildProjectionState = async (
  nc: Connection,
  log: EventLog,
  name: string,
  options: { readonly replicas?: number; readonly onProgress?: (progress: RebuildProgress) => void } = {}
): Promise<number> => {
  const target = REBUILDABLE[name]
  if (target === undefined) throw new Error(`projection ${name} cannot be rebuilt; rebuildable: ${Object.keys(REBUILDABLE).join(", ")}`)
  const naming = log.naming
  const bucket = target.bucket(naming)
  await deleteBucket(nc, bucket)
  const kv = await openBucket(nc, bucket, options.replicas ?? 1)
  const indexName = openTaskBucket(naming)
  // The index is written with the documents: rebuilt with them, not ready until they are.
  let index: Bucket | undefined
  if (name === "task-state") {
    await deleteBucket(nc, indexName)
    index = await openBucket(nc, indexName, options.replicas ?? 1)
  }
  // The fold reads task-state documents it does not hold; while dead-letters is rebuilt they come
  // from the live bucket, which is only read.
  await openBucket(nc, taskStateBucket(naming), options.replicas ?? 1)
  const total = await lastSequence(nc, eventsStream(naming))
  const publisher = new PipelinedPublisher(nc)
  let handled = 0
  let report = 0
  let finished: () => void = () => undefined
  const caughtUp = new Promise<void>((resolve) => (finished = resolve))
  const docs = new TaskDocs(new PipelinedKv(publisher, taskStateBucket(naming)), log, {
    write: name === "task-state",
    ...(index !== undefined ? { index: new PipelinedKv(publisher, indexName) } : {})
  })
  const runtime = new ProjectionRuntime(
    new EventFeed(nc, naming, { fromSeq: 1 }),
    docs,
    name === "dead-letters" ? [deadLetters(kv)] : [],
    { save: async () => undefined },
    {
      onHandled: (seq) => {
        handled = seq
        if (Date.now() - report > 200) {
          report = Date.now()
          options.onProgress?.({ handled: Math.min(handled, total), total })
        }
      }
    }
  )
  const running = runtime.run()
  try {
    while (runtime.applied < total) await Promise.race([caughtUp, new Promise((resolve) => setTimeout(resolve, 100))])
  } finally {
    finished()
    await runtime.stop()
    await running
    publisher.close()
  }
  await index?.put(OPEN_INDEX_READY_KEY, utf8(new Date().toISOString()))
  options.onProgress?.({ handled: total, total })
  return total
}
