/**
 * Running the projections in a broker: stand by until this broker holds the projections lease
 * (leadership.ts), then fold the log from the saved position on, until stopped or the lease is
 * lost. Every broker calls this; one at a time does the work.
 */
import { EventFeed } from "../src/eventlog/feed.js"
import type { EventLog } from "../src/eventlog/EventLog.js"
import { log } from "../src/log/log.js"
import { READ_MODEL_FLUSH_TIMEOUT_MS, eventsStream, readModelFlushSubject, type Naming } from "../streams/definitions.js"
import { TaskDocs, type TaskDocsOptions } from "./docs.js"
import { ProjectionLeadership, presenceSubject } from "./leadership.js"
import { ProjectionRuntime, type RuntimeHooks, type Sink } from "./runtime.js"
import type { Bucket, PipelinedKv } from "../src/eventlog/kv.js"
import { answerAfter, askAndWait, type Connection } from "../src/eventlog/connection.js"
import { lastSequence } from "../src/eventlog/streams.js"
import { backfillOpenTasks } from "../src/eventlog/openTasks.js"
import type { OpenTaskIndex } from "./openTasks.js"

export interface ProjectionsSetup extends RuntimeHooks {
  readonly nc: Connection
  readonly naming: Naming
  readonly log: EventLog
  /** The projections bucket (lease and position). */
  readonly leases: Bucket
  /** The task-state bucket, read and written through the request mux. */
  readonly taskState: PipelinedKv
  /**
   * The sinks of one leadership term (made afresh each time this broker takes over), told the
   * term's replay horizon: events up to it may have been handled by an earlier term.
   */
  readonly sinks: (term: { readonly replayHorizon: number }) => ReadonlyArray<Sink>
  /** The open-task index, written with the documents; filled at the start of a term when not ready. */
  readonly openTasks?: OpenTaskIndex
  readonly holder: string
  readonly docs?: TaskDocsOptions
  /** Lease time to live. Default 15 s; renewed every third of it. */
  readonly leaseTtlMs?: number
  /** Whether the server is reachable now: a stop without it saves nothing and gives nothing up. */
  readonly connected?: () => boolean
}

export interface RunningProjections {
  /** True while this broker runs the projections. */
  readonly leading: boolean
  /** Per projection, the sequence every event up to which is done (this broker's when leading, else the saved one). */
  positions(): Promise<ReadonlyMap<string, number>>
  /**
   * Has the leader, this broker or another, write everything it has coalesced; true once written,
   * false when no leader answered within `timeoutMs` (default `READ_MODEL_FLUSH_TIMEOUT_MS`).
   */
  flush(timeoutMs?: number): Promise<boolean>
  /** Stops folding (in-flight work finishes, the position is saved) and gives the lease up. */
  stop(): Promise<void>
}

/**
 * `work` for every caller, one run at a time: a caller who comes while it runs gets the next run,
 * which starts once that one ends (it may have started before what the caller wants done), and
 * every caller until then shares it.
 */
export const oneAfterAnother = (work: () => Promise<void>): (() => Promise<void>) => {
  let running: Promise<void> | undefined
  let next: Promise<void> | undefined
  const start = (): Promise<void> => {
    const run: Promise<void> = work().finally(() => {
      if (running === run) running = undefined
    })
    running = run
    return run
  }
  return () => {
    if (running === undefined) return start()
    next ??= running.then(
      () => undefined,
      () => undefined
    ).then(() => {
      next = undefined
      return start()
    })
    return next
  }
}

export const startProjections = (setup: ProjectionsSetup): RunningProjections => {
  const leadership = new ProjectionLeadership(
    setup.leases,
    setup.holder,
    { nc: setup.nc, subject: presenceSubject(setup.naming.subjectRoot, setup.holder) },
    setup.leaseTtlMs ?? 15_000
  )
  const renewEveryMs = (setup.leaseTtlMs ?? 15_000) / 3
  const connected = setup.connected ?? (() => true)
  let runtime: ProjectionRuntime | undefined
  /** The open-task index was found or made ready by an earlier term: nothing unreadies it while brokers run. */
  let indexReady = false
  let names: ReadonlyArray<string> = []
  let stopping = false
  let wake: (() => void) | undefined
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms)
      wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })

  const lead = async (): Promise<void> => {
    const from = (await leadership.position()) + 1
    // What the log held before this term may have been folded into the bucket by another one.
    const horizon = await lastSequence(setup.nc, eventsStream(setup.naming))
    const index = setup.openTasks
    if (index !== undefined && !indexReady) {
      // Before the first fold of the term: nothing writes the documents while they are read. Once
      // per process: a later term (a failover, when requests are slow) asks nothing more.
      const written = await backfillOpenTasks(setup.nc, index.documents, index.bucket, index.writer, index.name)
      if (written !== undefined) log.info({ written }, "projections: filled the open-task index from the task-state documents")
      indexReady = true
    }
    const feed = new EventFeed(setup.nc, setup.naming, { fromSeq: from })
    const docs = new TaskDocs(setup.taskState, setup.log, { ...setup.docs, replayHorizon: horizon, ...(index !== undefined ? { index: index.writer } : {}) })
    const sinks = setup.sinks({ replayHorizon: horizon })
    names = ["task-state", ...sinks.map((sink) => sink.name)]
    const current = new ProjectionRuntime(feed, docs, sinks, { save: (seq) => leadership.save(seq) }, setup)
    runtime = current
    // Readers of the read model, in any broker or client, ask for the coalesced writes first: what
    // the log held when they asked is applied (within the deadline), then written, so a reader sees
    // the tasks it just created.
    // Questions that come while one is answered share the next answer, so a flood of them costs a
    // look at the log's end and a flush at a time, not one each.
    const writeUpToTheEnd = oneAfterAnother(async () => {
      await current.appliedThrough(await lastSequence(setup.nc, eventsStream(setup.naming)), READ_MODEL_FLUSH_TIMEOUT_MS)
      // The coalesced writes, and the effects already sent (a dead letter's entry is one).
      await Promise.all([current.flushNow(), current.effectsSettled(READ_MODEL_FLUSH_TIMEOUT_MS)])
    })
    const stopAnswering = answerAfter(setup.nc, readModelFlushSubject(setup.naming), writeUpToTheEnd)
    log.info({ holder: setup.holder, from }, "projections: this broker leads; folding the log")
    const running = current.run()
    // WHY a flag and not Promise.race with the run on every renewal: each race adds a reaction to
    // the run, kept until it ends — one every few seconds for as long as this broker leads.
    let ended = false
    const end = () => {
      ended = true
      wake?.()
    }
    void running.then(end, end)
    while (!stopping && !ended) {
      await pause(renewEveryMs)
      if (ended || stopping) break
      if (!(await leadership.renew().catch(() => false))) {
        log.warn({ holder: setup.holder }, "projections: the lease was lost; standing by")
        current.abandon()
        break
      }
    }
    if (stopping) await (connected() ? current.stop() : current.abandon())
    await running.catch(() => undefined)
    stopAnswering()
    runtime = undefined
  }

  const loop = (async () => {
    while (!stopping) {
      const acquired = await leadership.tryAcquire().catch(() => false)
      if (acquired && !stopping) {
        try {
          await lead()
        } catch (error) {
          log.warn({ error: error instanceof Error ? error.message : String(error) }, "projections: leading failed; trying again")
        }
        // Without the server the lease runs out by itself; a standby takes over then.
        if (stopping && connected()) await leadership.release()
      }
      if (!stopping) await pause(1_000)
    }
    leadership.close()
  })()

  return {
    get leading() {
      return runtime !== undefined
    },
    positions: async () => {
      if (runtime !== undefined) return runtime.positions()
      const saved = await ProjectionLeadership.savedPosition(setup.leases)
      return new Map((names.length > 0 ? names : ["task-state", "dispatcher", "webhooks", "dead-letters", "metrics"]).map((name) => [name, saved]))
    },
    // Asked over NATS even when this broker leads: the one path, with its deadline.
    flush: (timeoutMs = READ_MODEL_FLUSH_TIMEOUT_MS) => askAndWait(setup.nc, readModelFlushSubject(setup.naming), timeoutMs),
    stop: async () => {
      stopping = true
      wake?.()
      if (!connected()) {
        // Nothing can be saved or given up without the server, and its requests would only time
        // out: leave at once. The next leader replays from the last saved position.
        void runtime?.abandon()
        return
      }
      // The runtime stops after the event it is applying; its final writes finish below.
      void runtime?.stop()
      await loop
    }
  }
}
