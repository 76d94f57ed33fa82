/**
 * The durable pull consumer of one claim lane (`<root>.claim.<tenant>.<command>.<lane>`): work-queue
 * streams need non-overlapping filters, so there is one per lane, shared by every worker and broker
 * that claims from it, created on demand and removed by the server when unused.
 */
import { AckPolicy, DeliverPolicy, nanos, type JetStreamManager } from "nats"
import { addOrUpdateConsumer } from "../streams.js"
import { claimSubject, claimsStream, type Naming } from "../../../streams/definitions.js"

export const claimConsumerName = (tenant: string, command: string, lane: number) => `claim-${tenant}-${command}-${lane}`

export interface ClaimConsumerSettings {
  /** How long a delivered claim stays hidden without an answer. */
  readonly ackWaitMs: number
  /** Removed by the server after this long without a pull. */
  readonly inactiveMs: number
}

/** Creates the lane's consumer, or brings an existing one to these settings (all are updatable). */
export const ensureClaimConsumer = async (
  jsm: JetStreamManager,
  naming: Naming,
  tenant: string,
  command: string,
  lane: number,
  settings: ClaimConsumerSettings
): Promise<string> => {
  const name = claimConsumerName(tenant, command, lane)
  await addOrUpdateConsumer(jsm, claimsStream(naming), {
    durable_name: name,
    filter_subject: claimSubject(naming, tenant, command, lane),
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(settings.ackWaitMs),
    max_deliver: -1,
    max_ack_pending: -1,
    max_waiting: 4096,
    inactive_threshold: nanos(settings.inactiveMs)
  })
  return name
}
