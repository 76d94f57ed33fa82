/**
 * The EventLog on JetStream: appends go through the pipelined publisher with
 * `Nats-Expected-Last-Subject-Sequence` and the trace headers; reads walk a task's subject with
 * direct gets (`$JS.API.DIRECT.GET` with `next_by_subj`), which any replica can answer.
 */
import type { Msg, NatsConnection } from "nats"
import { DEFAULT_NAMING, eventSubject, eventsStream, type Naming } from "../../streams/definitions.js"
import type { StoredEvent } from "../domain/events.js"
import { HEADERS } from "../tracing/conventions.js"
import { writeTraceHeaders } from "../tracing/codec.js"
import { decodeEvent, encodeEvent, type RawEvent } from "./codec.js"
import { LogError } from "./errors.js"
import type { AppendRequest, AppendResult, EventLog, TaskHistory } from "./EventLog.js"
import { PipelinedPublisher, type PipelineOptions } from "./pipeline.js"
import { headerBlockOf, headerReader, statusCodeOf, statusTextOf } from "./rawHeaders.js"
import { WireHeaders } from "./wireHeaders.js"
import { utf8 } from "./utf8.js"

/** A direct-get reply as a raw event; undefined for "no message" (status 404). */
const directReplyToRaw = (msg: Msg): RawEvent | undefined => {
  const block = headerBlockOf(msg)
  const code = statusCodeOf(block)
  if (block === undefined || code === 404) return undefined
  if (code >= 300) throw new Error(`direct get failed: ${statusTextOf(block)}`)
  const header = headerReader(block)
  return {
    seq: Number(header("Nats-Sequence")),
    subject: header("Nats-Subject") ?? "",
    time: new Date(header("Nats-Time-Stamp") ?? ""),
    data: msg.data,
    header
  }
}

export class JetStreamEventLog implements EventLog {
  private readonly stream: string

  constructor(
    readonly nc: NatsConnection,
    readonly publisher: PipelinedPublisher,
    readonly naming: Naming = DEFAULT_NAMING
  ) {
    this.stream = eventsStream(naming)
  }

  static connect(nc: NatsConnection, naming: Naming = DEFAULT_NAMING, options: PipelineOptions = {}) {
    return new JetStreamEventLog(nc, new PipelinedPublisher(nc, options), naming)
  }

  append(request: AppendRequest): Promise<AppendResult> {
    const h = new WireHeaders()
    h.set(HEADERS.event, request.event.type)
    writeTraceHeaders(request.trace, (key, value) => h.set(key, value))
    h.set("Nats-Expected-Stream", this.stream)
    h.set("Nats-Expected-Last-Subject-Sequence", String(request.expectedSeq))
    h.set(HEADERS.prevSeq, String(request.expectedSeq))
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
      const reply = await this.publisher.mux.request(
        `$JS.API.DIRECT.GET.${this.stream}`,
        utf8(JSON.stringify({ next_by_subj: subject, seq }))
      )
      if (!reply.ok) throw new LogError({ reason: "read_failed", detail: `reading ${subject}: ${reply.reason}` })
      let raw: RawEvent | undefined
      try {
        raw = directReplyToRaw(reply.msg)
      } catch (cause) {
        throw new LogError({ reason: "read_failed", detail: `reading ${subject}: ${String(cause)}`, cause })
      }
      if (raw === undefined) break
      version = raw.seq
      seq = raw.seq + 1
      const decoded = decodeEvent(raw)
      if (decoded.ok) events.push(decoded.stored)
      else undecodable.push({ seq: decoded.seq, reason: decoded.reason })
    }
    return { events, version, undecodable }
  }

  close(): void {
    this.publisher.close()
  }
}
