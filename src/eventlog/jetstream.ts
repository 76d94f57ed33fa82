/**
 * The EventLog on JetStream: appends go through the pipelined publisher with
 * `Nats-Expected-Last-Subject-Sequence` and the trace headers; reads walk a task's subject with
 * direct gets (`next_by_subj`), which any replica can answer.
 */
import { headers, type JetStreamManager, type NatsConnection, type StoredMsg } from "nats"
import { DEFAULT_NAMING, eventSubject, eventsStream, type Naming } from "../../streams/definitions.js"
import type { StoredEvent } from "../domain/events.js"
import { HEADERS } from "../tracing/conventions.js"
import { writeTraceHeaders } from "../tracing/codec.js"
import { decodeEvent, encodeEvent } from "./codec.js"
import { LogError } from "./errors.js"
import type { AppendRequest, EventLog, TaskHistory } from "./EventLog.js"
import { PipelinedPublisher, type PipelineOptions, type PublishResult } from "./pipeline.js"

export const storedMsgToRaw = (msg: StoredMsg) => ({
  seq: msg.seq,
  subject: msg.subject,
  time: msg.time,
  data: msg.data,
  header: (key: string) => (msg.header.has(key) ? msg.header.get(key) : undefined)
})

const isNoMessage = (error: unknown) =>
  error instanceof Error && ((error as { code?: unknown }).code === "404" || /no message found/i.test(error.message))

export class JetStreamEventLog implements EventLog {
  private readonly stream: string

  constructor(
    readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    readonly publisher: PipelinedPublisher,
    readonly naming: Naming = DEFAULT_NAMING
  ) {
    this.stream = eventsStream(naming)
  }

  static async connect(nc: NatsConnection, naming: Naming = DEFAULT_NAMING, options: PipelineOptions = {}) {
    return new JetStreamEventLog(nc, await nc.jetstreamManager(), new PipelinedPublisher(nc, options), naming)
  }

  append(request: AppendRequest): Promise<PublishResult> {
    const h = headers()
    h.set(HEADERS.event, request.event.type)
    writeTraceHeaders(request.trace, (key, value) => h.set(key, value))
    h.set("Nats-Expected-Stream", this.stream)
    h.set("Nats-Expected-Last-Subject-Sequence", String(request.expectedSeq))
    const subject = eventSubject(this.naming, request.tenant, request.taskId)
    return this.publisher.publish(subject, encodeEvent(request.event), h, request.expectedSeq)
  }

  async readTask(tenant: string, taskId: string, fromSeq = 0): Promise<TaskHistory> {
    const subject = eventSubject(this.naming, tenant, taskId)
    const events: Array<StoredEvent> = []
    const undecodable: Array<{ seq: number; reason: string }> = []
    let version = 0
    let seq = fromSeq
    for (;;) {
      let msg: StoredMsg
      try {
        msg = await this.jsm.direct.getMessage(this.stream, { next_by_subj: subject, seq })
      } catch (cause) {
        if (isNoMessage(cause)) break
        throw new LogError({ reason: "read_failed", detail: `reading ${subject}: ${String(cause)}`, cause })
      }
      version = msg.seq
      seq = msg.seq + 1
      const decoded = decodeEvent(storedMsgToRaw(msg))
      if (decoded.ok) events.push(decoded.stored)
      else undecodable.push({ seq: decoded.seq, reason: decoded.reason })
    }
    return { events, version, undecodable }
  }

  close(): void {
    this.publisher.close()
  }
}
