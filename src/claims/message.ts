/**
 * The claim message: what the dispatcher puts on a claim subject for workers to pull. It only
 * points at the task; the log stays the truth, and the claimer re-reads it before appending.
 */
import { headers } from "nats"
import { claimSubject, claimsStream, type Naming } from "../../streams/definitions.js"

export interface ClaimMessage {
  readonly taskId: string
  readonly tenant: string
  readonly command: string
  readonly priority: number
  /** Sequence of the event that made the task claimable (create or requeue). */
  readonly eventSeq: number
  /** Not to be handed to a worker before this instant (ISO 8601). */
  readonly runAt?: string
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

export const encodeClaim = (claim: ClaimMessage): Uint8Array => encoder.encode(JSON.stringify(claim))

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
  const h = headers()
  h.set("Nats-Msg-Id", `${claim.tenant}.${claim.taskId}.${claim.eventSeq}`)
  h.set("Nats-Expected-Stream", claimsStream(naming))
  return { subject: claimSubject(naming, claim.tenant, claim.command, claim.priority), data: encodeClaim(claim), headers: h }
}
