/**
 * One task's events read with direct gets (`next_by_subj`), which any replica answers: the HTTP
 * routes' read, and the context replay fetches for a task whose window began after its start.
 * The log timestamp is taken from `Nats-Time-Stamp`, which keeps the nanoseconds.
 */
import type { NatsConnection } from "nats"
import type { LogRecord } from "./records.js"
import { headerBlockOf, headerIn, parseHeaderBlock, statusTextOf } from "../rawHeaders.js"
import { makeRecord, nsFromRfc3339, type BodyPolicy } from "./records.js"
import { utf8 } from "../utf8.js"

export interface SubjectRead {
  /** Stop before this sequence (the window's first event of the task). Default: read to the end. */
  readonly beforeSeq?: number
  readonly bodies: BodyPolicy
  /** Per request. Default 5 s. */
  readonly timeoutMs?: number
}

/**
 * The events on `subject` (a task's subject, or `<root>.evt.*.<id>` to find a task of any tenant)
 * in log order. Rejects when the log cannot be read, with the NATS error as the cause (so the
 * HTTP API answers 503 for an unreachable server).
 */
export const readSubject = async (nc: NatsConnection, stream: string, subject: string, read: SubjectRead): Promise<Array<LogRecord>> => {
  const out: Array<LogRecord> = []
  let seq = 0
  for (;;) {
    let msg
    try {
      msg = await nc.request(`$JS.API.DIRECT.GET.${stream}`, utf8(JSON.stringify({ next_by_subj: subject, seq })), { timeout: read.timeoutMs ?? 5_000 })
    } catch (cause) {
      throw new Error(`reading ${subject}: ${String(cause)}`, { cause })
    }
    const block = headerBlockOf(msg)
    if (block === undefined) break
    const fields = parseHeaderBlock(block)
    if (fields.code === 404) break
    if (fields.code >= 300) throw new Error(`reading ${subject}: ${statusTextOf(block)}`)
    const at = Number(headerIn(block, "Nats-Sequence"))
    if (!Number.isSafeInteger(at) || (read.beforeSeq !== undefined && at >= read.beforeSeq)) break
    const timeNs = nsFromRfc3339(headerIn(block, "Nats-Time-Stamp") ?? "") ?? "0"
    out.push(makeRecord(at, headerIn(block, "Nats-Subject") ?? "", timeNs, fields, msg.data, read.bodies))
    seq = at + 1
  }
  return out
}
