/**
 * What the rest of codeq asks of a stream: where it ends, how many messages each subject holds,
 * whether it can be read, and a durable work consumer on it. JetStream's answers stay in here.
 */
import { AckPolicy, DeliverPolicy, nanos, type ConsumerConfig, type ConsumerInfo, type JetStreamManager } from "nats"
import type { Connection } from "./connection.js"
import { isConsumerExists, isStreamNotFound } from "./errors.js"

/** The stream's last sequence (0 when empty). */
export const lastSequence = async (conn: Connection, stream: string): Promise<number> =>
  (await (await conn.jetstreamManager({ checkAPI: false })).streams.info(stream)).state.last_seq

/**
 * Removes the messages of `subject` stored below sequence `below`; resolves with how many went.
 * Every filtered purge by sequence goes through here. WHY nothing is asked below 2: nats-server 2.9
 * bounds a filtered purge only from sequence 2 on, and takes one below 1 for every message of the
 * subject — "nothing below the first message" would remove them all.
 */
export const purgeSubjectBelow = async (jsm: JetStreamManager, stream: string, subject: string, below: number): Promise<number> =>
  below < 2 ? 0 : (await jsm.streams.purge(stream, { filter: subject, seq: below })).purged

/** Messages held per subject matching `filter` (subjects without messages are absent). */
export const subjectCounts = async (conn: Connection, stream: string, filter: string): Promise<Readonly<Record<string, number>>> => {
  const jsm = await conn.jetstreamManager({ checkAPI: false })
  return (await jsm.streams.info(stream, { subjects_filter: filter })).state.subjects ?? {}
}

export type StreamsReadiness = { readonly ready: true } | { readonly ready: false; readonly error: string }

/** Whether JetStream answers within `timeoutMs` and every one of `streams` exists and can be read. */
export const checkStreams = async (conn: Connection, streams: ReadonlyArray<string>, timeoutMs: number): Promise<StreamsReadiness> => {
  try {
    const jsm = await conn.jetstreamManager({ timeout: timeoutMs, checkAPI: false })
    for (const stream of streams) {
      try {
        await jsm.streams.info(stream)
      } catch (error) {
        return { ready: false, error: isStreamNotFound(error) ? `stream ${stream} does not exist` : `stream ${stream} cannot be read` }
      }
    }
    return { ready: true }
  } catch {
    return { ready: false, error: "JetStream does not answer" }
  }
}

export interface WorkConsumerSettings {
  /** How long a delivered message stays hidden without an answer. */
  readonly ackWaitMs: number
  /** Deliveries without an answer at once, at most. */
  readonly maxAckPending: number
}

/**
 * Creates the durable pull consumer `name` on `stream` (every message, explicit acks, redelivered
 * without limit), or brings an existing one to these settings.
 */
export const ensureWorkConsumer = async (conn: Connection, stream: string, name: string, settings: WorkConsumerSettings): Promise<void> => {
  await addOrUpdateConsumer(await conn.jetstreamManager(), stream, {
    durable_name: name,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(settings.ackWaitMs),
    max_ack_pending: settings.maxAckPending,
    max_deliver: -1
  })
}

/** Creates the durable consumer `config` names on `stream`, or brings an existing one to `config`. */
export const addOrUpdateConsumer = async (jsm: JetStreamManager, stream: string, config: Partial<ConsumerConfig> & { readonly durable_name: string }): Promise<void> => {
  try {
    await jsm.consumers.add(stream, config)
  } catch (error) {
    if (!isConsumerExists(error)) throw error
    await jsm.consumers.update(stream, config.durable_name, config)
  }
}

/** Where a reading consumer starts: a sequence, or the first message stored at or after an instant. */
export type ReadStart = { readonly seq: number } | { readonly time: Date }

/**
 * Makes an ephemeral consumer for reading `stream` in order: no acknowledgements, state in memory,
 * gone 30 s after its reader stops, limited to `filter` — the event feed's and replay's reader.
 *
 * A filter that is the stream's only subject is not sent: it selects every message anyway, and
 * nats-server 2.9 counts what a filtered consumer has pending by walking every subject of the
 * stream — ~250 ms per million events on this machine before the first message, against ~1 ms
 * unfiltered.
 */
export const addReadConsumer = async (jsm: JetStreamManager, stream: string, filter: string, start: ReadStart): Promise<ConsumerInfo> => {
  const subjects = (await jsm.streams.info(stream)).config.subjects ?? []
  const whole = subjects.length === 1 && subjects[0] === filter
  return jsm.consumers.add(stream, {
    ack_policy: AckPolicy.None,
    ...("seq" in start
      ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, start.seq) }
      : { deliver_policy: DeliverPolicy.StartTime, opt_start_time: start.time.toISOString() }),
    ...(whole ? {} : { filter_subject: filter }),
    mem_storage: true,
    num_replicas: 1,
    inactive_threshold: nanos(30_000)
  })
}
