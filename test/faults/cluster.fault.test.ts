/**
 * A node of a 3-node JetStream cluster (R3 streams) SIGKILLed mid-run and restarted, with the
 * producer, the worker and the broker each connected to a different node: once the node leading
 * the event stream, once a follower. Nothing acknowledged may be lost, nothing completed twice,
 * and no task may wait longer than its lease plus 5 s after the kill.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startBroker } from "../../src/broker.js"
import { CodeqClient } from "../../src/sdk/client.js"
import { eventsStream } from "../../streams/definitions.js"
import { Ledger, accountFromLog, describeFate, produce, renderAccounting, settled } from "../support/accounting.js"
import { startNatsCluster, type NatsCluster } from "../support/cluster.js"
import { brokerConfig, freshNaming, waitFor } from "../support/harness.js"

const TASKS = 300
const LEASE_SECONDS = 15
const COMMAND = "cluster-fault"
/**
 * A claim message the killed node was carrying to the worker (the worker is on n1, which can be
 * the victim) never arrives, and the server delivers it again only after the claim consumers' ack
 * wait: 10 s here, as in the single-node test (the default, 30 s, is longer than the bound below).
 */
const ACK_WAIT_MS = 10_000

let cluster: NatsCluster
beforeAll(async () => {
  cluster = await startNatsCluster()
})
afterAll(async () => {
  await cluster?.stop()
})

describe("a 3-node cluster losing a node mid-run", () => {
  it.each(["leader", "follower"] as const)(
    "loses nothing and completes nothing twice when the event stream's %s is killed and restarted",
    async (role) => {
      const naming = freshNaming()
      await cluster.provision(naming)
      const events = eventsStream(naming)
      // Clients on different nodes: the producer on n0, the worker on n1, the broker on n2.
      const [producerNc, workerNc, brokerNc] = await Promise.all([cluster.connect(0), cluster.connect(1), cluster.connect(2)])
      const broker = await startBroker({ ...brokerConfig(cluster.urls.join(","), naming), streams: cluster.streamSettings }, { connection: brokerNc })
      const producerClient = await CodeqClient.connect({ connection: producerNc, naming })
      const workerClient = await CodeqClient.connect({ connection: workerNc, naming })
      const ledger = new Ledger()
      const worker = workerClient.worker("acme", { workerId: `cluster-${role}`, leaseSeconds: LEASE_SECONDS, ackWaitMs: ACK_WAIT_MS })
      const running = worker.run([COMMAND], ledger.handler(10), { concurrency: 16 })
      let faultAt = Number.POSITIVE_INFINITY
      let victim = -1
      try {
        const producing = produce(producerClient.producer("acme"), ledger, TASKS, () => ({ command: COMMAND, payload: { n: 1 } }), { concurrency: 4 })
        // Mid-run: work flows through all three nodes when the node goes.
        await waitFor(() => ledger.handled.size >= TASKS / 5, { timeoutMs: 60_000, what: "work to flow" })
        const leader = await cluster.leaderOf(events)
        victim = role === "leader" ? leader : (leader + 1) % 3
        faultAt = Date.now()
        await cluster.kill(victim)
        const handledAtKill = ledger.handled.size
        // The cluster works on without the node (a new leader is elected for a leader's streams).
        await waitFor(() => ledger.handled.size >= handledAtKill + 30, { timeoutMs: 30_000, what: "work to go on without the node" })
        await cluster.restart(victim)
        await producing
        await settled(producerClient.log, "acme", ledger, (LEASE_SECONDS + 40) * 1000)
        const accounting = await accountFromLog(producerClient.log, producerNc, "acme", ledger, { faultAt })
        console.log(
          renderAccounting(`cluster node killed (${role}: n${victim})`, accounting, {
            "claim appends looked up in the log": workerClient.repo.unresolvedAppends,
            "appends sent again": workerClient.repo.appendRetries + producerClient.repo.appendRetries,
            "slowest task": describeFate(accounting.longestWaitTask === undefined ? undefined : accounting.fates.get(accounting.longestWaitTask))
          })
        )
        const slowest = accounting.longestWaitTask === undefined ? undefined : accounting.fates.get(accounting.longestWaitTask)
        expect(accounting.lost).toBe(0)
        expect(accounting.completedTwice).toBe(0)
        expect(accounting.handledTwice).toBe(0)
        expect(accounting.createdAcked).toBe(TASKS)
        expect(accounting.pending, describeFate(slowest)).toBe(0)
        expect(accounting.completedOnce).toBe(accounting.inLog)
        expect(accounting.longestWaitMs, describeFate(slowest)).toBeLessThanOrEqual((LEASE_SECONDS + 5) * 1000)
      } finally {
        await worker.stop()
        await running
        await producerClient.close()
        await workerClient.close()
        await broker.stop()
        if (!cluster.nodes[victim]?.running && victim >= 0) await cluster.restart(victim)
        await cluster.waitForStreamHealthy(events)
      }
    }
  )
})
