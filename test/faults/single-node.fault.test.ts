/**
 * A single nats-server with a file store SIGKILLed mid-run and restarted on the same store: the
 * broker, the producer and the worker reconnect, nothing acknowledged is lost, nothing completes
 * twice, no task waits longer than its lease plus 5 s after the restart, and afterwards the claim
 * stream holds nothing — no claim message left below a consumer's ack floor.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { connect, type NatsConnection } from "nats"
import { startBroker } from "../../src/broker.js"
import { CodeqClient } from "../../src/sdk/client.js"
import { startNatsServer, type NatsServerHandle } from "../../src/testing/natsServer.js"
import { claimsStream } from "../../streams/definitions.js"
import { Ledger, accountFromLog, describeFate, produce, renderAccounting, settled } from "../support/accounting.js"
import { brokerConfig, freshNaming, provision, waitFor } from "../support/harness.js"

const TASKS = 300
const LEASE_SECONDS = 10
const COMMAND = "crash"
/**
 * A claim acknowledged while the server was down comes back after this and is acknowledged again
 * (its task ended); claim messages the crash left below an ack floor go 3 s after the reconnect.
 */
const ACK_WAIT_MS = 10_000

let server: NatsServerHandle
beforeAll(async () => {
  server = await startNatsServer({ ownServer: true })
})
afterAll(async () => {
  await server?.stop()
})

const reconnecting = (url: string): Promise<NatsConnection> =>
  connect({ servers: url, noAsyncTraces: true, maxReconnectAttempts: -1, reconnectTimeWait: 250 })

describe("a single nats-server SIGKILLed mid-run", () => {
  it("loses nothing, completes nothing twice and leaves no claim message behind once restarted on its store", async () => {
    const naming = freshNaming()
    const [brokerNc, producerNc, workerNc] = await Promise.all([reconnecting(server.url), reconnecting(server.url), reconnecting(server.url)])
    await provision(producerNc, naming)
    const broker = await startBroker(brokerConfig(server.url, naming), { connection: brokerNc })
    const producerClient = await CodeqClient.connect({ connection: producerNc, naming, closeConnection: true })
    const workerClient = await CodeqClient.connect({ connection: workerNc, naming, closeConnection: true })
    const ledger = new Ledger()
    const worker = workerClient.worker("acme", { workerId: "crash-worker", leaseSeconds: LEASE_SECONDS, ackWaitMs: ACK_WAIT_MS })
    const running = worker.run([COMMAND], ledger.handler(10), { concurrency: 16 })
    let faultAt = Number.POSITIVE_INFINITY
    try {
      const producing = produce(producerClient.producer("acme"), ledger, TASKS, () => ({ command: COMMAND, payload: { n: 1 } }), { concurrency: 4 })
      await waitFor(() => ledger.handled.size >= TASKS / 5, { timeoutMs: 60_000, what: "work to flow" })
      await server.kill()
      faultAt = Date.now()
      await server.restart()
      await producing
      await settled(producerClient.log, "acme", ledger, (LEASE_SECONDS + 40) * 1000)
      const jsm = await producerNc.jetstreamManager()
      // Every claim message is answered once its task has ended: none may stay behind.
      const claimsLeft = await waitFor(async () => ((await jsm.streams.info(claimsStream(naming))).state.messages === 0 ? 0 : undefined), {
        timeoutMs: ACK_WAIT_MS + 15_000,
        what: "the claim stream to empty"
      }).catch(async () => (await jsm.streams.info(claimsStream(naming))).state.messages)
      if (claimsLeft !== 0) {
        // What the lanes say about the messages left, for the failure message below.
        const si = await jsm.streams.info(claimsStream(naming))
        console.log("claim stream", JSON.stringify(si.state))
        for await (const ci of jsm.consumers.list(claimsStream(naming))) console.log("claim consumer", ci.name, JSON.stringify({ ack_floor: ci.ack_floor, delivered: ci.delivered, pending: ci.num_pending, ackPending: ci.num_ack_pending, redelivered: ci.num_redelivered, filter: ci.config.filter_subject }))
      }
      const accounting = await accountFromLog(producerClient.log, producerNc, "acme", ledger, { faultAt })
      const slowest = accounting.longestWaitTask === undefined ? undefined : accounting.fates.get(accounting.longestWaitTask)
      console.log(
        renderAccounting("single nats-server SIGKILLed and restarted", accounting, {
          "claim messages left in the stream": claimsLeft,
          "appends looked up in the log": workerClient.repo.unresolvedAppends + producerClient.repo.unresolvedAppends,
          "slowest task": describeFate(slowest)
        })
      )
      expect(accounting.lost).toBe(0)
      expect(accounting.completedTwice).toBe(0)
      expect(accounting.handledTwice).toBe(0)
      expect(accounting.createdAcked).toBe(TASKS)
      expect(accounting.pending, describeFate(slowest)).toBe(0)
      expect(accounting.completedOnce).toBe(accounting.inLog)
      expect(accounting.longestWaitMs, describeFate(slowest)).toBeLessThanOrEqual((LEASE_SECONDS + 5) * 1000)
      expect(claimsLeft).toBe(0)
    } finally {
      await worker.stop()
      await running
      await producerClient.close()
      await workerClient.close()
      await broker.stop()
      await brokerNc.close()
    }
  })
})
