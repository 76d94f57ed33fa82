/**
 * The claim message: what the dispatcher puts on a claim subject for workers to pull. It points at
 * the task and, for a fresh create, carries the TaskCreated event it was dispatched from (body,
 * trace headers, sequence): a worker can then claim without reading the log, appending TaskClaimed
 * right after that sequence. The log stays the truth — if anything happened to the task since, the
 * append is refused and the worker reads the history and decides again.
 */
import { dedupHeaders } from "../pipeline.js"
import { Either } from "effect"
import { decodeCreated } from "../../domain/eventDecode.js"
import type { EventOf, EventTrace, StoredEvent } from "../../domain/events.js"
import { claimSubject, claimsStream, eventSubject, type Naming } from "../../../streams/definitions.js"
import { utf8 } from "../utf8.js"

export interface ClaimMessage {
  readonly taskId: string
  readonly tenant: string
  readonly command: string
  readonly priority: number
  /** Sequence of the event that made the task claimable (create or requeue). */
  readonly eventSeq: number
  /** Not to be handed to a worker before this instant (ISO 8601). */
  readonly runAt?: string
  /** For a create: the TaskCreated as stored (at `eventSeq`), so claiming needs no read. */
  readonly created?: { readonly event: EventOf<"TaskCreated">; readonly trace: EventTrace | undefined; readonly time: string }
}

const decoder = new TextDecoder()

export const encodeClaim = (claim: ClaimMessage): Uint8Array => utf8(JSON.stringify(claim))

export const decodeClaim = (data: Uint8Array): ClaimMessage | undefined => {
  try {
    const value = JSON.parse(decoder.decode(data)) as Partial<ClaimMessage>
    return typeof value.taskId === "string" && typeof value.tenant === "string" && typeof value.command === "string"
      ? (value as ClaimMessage)
      : undefined
  } catch {
    return undefined
  }
}

/** Subject, body and headers of a claim; `Nats-Msg-Id` makes a replayed dispatch a no-op. */
export const claimPublication = (naming: Naming, claim: ClaimMessage) => {
  const h = dedupHeaders(`${claim.tenant}.${claim.taskId}.${claim.eventSeq}`, claimsStream(naming))
  return { subject: claimSubject(naming, claim.tenant, claim.command, claim.priority), data: encodeClaim(claim), headers: h }
}

/** The claim message for a stored TaskCreated, carrying the event itself. */
export const claimOfCreate = (stored: StoredEvent<EventOf<"TaskCreated">>): ClaimMessage => {
  const e = stored.event
  return {
    taskId: e.taskId,
    tenant: e.tenant,
    command: e.command,
    priority: e.priority,
    eventSeq: stored.seq,
    ...(e.runAt !== undefined ? { runAt: e.runAt } : {}),
    created: { event: e, trace: stored.trace, time: stored.time.toISOString() }
  }
}

/**
 * The TaskCreated a claim message carries, as a stored event — or undefined when it carries none,
 * or one that does not decode or does not match the claim (then the claimer reads the log).
 */
export const createdOfClaim = (naming: Naming, claim: ClaimMessage): StoredEvent | undefined => {
  if (claim.created === undefined || typeof claim.eventSeq !== "number") return undefined
  const decoded = decodeCreated(claim.created.event)
  if (Either.isLeft(decoded)) return undefined
  const event = decoded.right
  if (event.taskId !== claim.taskId || event.tenant !== claim.tenant) return undefined
  return {
    seq: claim.eventSeq,
    subject: eventSubject(naming, claim.tenant, claim.taskId),
    time: new Date(claim.created.time),
    event,
    trace: claim.created.trace,
    prevSeq: 0
  }
}
