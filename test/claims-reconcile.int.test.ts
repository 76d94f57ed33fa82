/**
 * The claim reconciler (src/eventlog/claims/reconcile.ts) removes only what is below a lane's ack
 * floor — never a waiting claim, however its counts race with the workers — and never holds a
 * broker's stop when the server is gone: a pass in flight then only waits out its request timeouts.
 */
import { connect, RetentionPolicy } from "nats"
import { afterAll, describe, expect, it } from "vitest"
import { ClaimReconciler, purgeBelow, reconcileClaims } from "../src/eventlog/claims/reconcile.js"
import { startBroker } from "../src/broker.js"
import { CodeqClient } from "../src/sdk/client.js"
import { claimsStream } from "../streams/definitions.js"
import { purgeSubjectBelow } from "../src/eventlog/streams.js"
import { brokerConfig, freshNaming, provision, quietLogger, useNatsServer, waitFor } from "./support/harness.js"

const nats = useNatsServer({ ownServer: true })

describe("claim reconciler", () => {
  const resumes: Array<() => void> = []
  afterAll(() => {
    for (const resume of resumes) resume()
  })

  it("purges below an ack floor of 1 or more only: nats-server 2.9 takes a filtered purge below sequence 1 for all of the subject", async () => {
    // The counts as one pass read them under load: more stored than pending and unacknowledged, by a race.
    expect(purgeBelow({ stored: 47_346, pending: 46_266, ackPending: 1_048, ackFloor: 0 })).toBeUndefined()
    expect(purgeBelow({ stored: 10, pending: 5, ackPending: 2, ackFloor: 40 })).toBe(41)
    expect(purgeBelow({ stored: 10, pending: 8, ackPending: 2, ackFloor: 40 })).toBeUndefined()
    // Why: the server's answer to exactly the purge a floor of 0 made.
    const nc = await connect({ servers: nats.url() })
    const jsm = await nc.jetstreamManager()
    const name = `PURGE${Date.now()}`
    await jsm.streams.add({ name, subjects: [`${name}.>`], retention: RetentionPolicy.Workqueue })
    const js = nc.jetstream()
    for (let i = 0; i < 5; i++) await js.publish(`${name}.lane`, new Uint8Array())
    // codeq's one way to purge by sequence refuses that, and bounds the rest.
    expect(await purgeSubjectBelow(jsm, name, `${name}.lane`, 1)).toBe(0)
    expect(await purgeSubjectBelow(jsm, name, `${name}.lane`, 3)).toBe(2)
    expect((await jsm.streams.info(name)).state.messages).toBe(3)
    expect((await jsm.streams.purge(name, { filter: `${name}.lane`, seq: 1 })).purged).toBe(3)
    await jsm.streams.delete(name)
    await nc.close()
  })

  it("loses no waiting claim to passes made while a worker works through a backlog behind a delayed claim", async () => {
    const naming = freshNaming()
    const broker = await startBroker(brokerConfig(nats.url(), naming))
    const client = await CodeqClient.connect({ servers: nats.url(), naming })
    let passing = true
    let passes = 0
    try {
      const producer = client.producer("acme")
      // The lane's first claim waits for its runAt: the lane's ack floor stays at 0 meanwhile.
      await producer.create({ command: "lane", runAt: new Date(Date.now() + 3_600_000).toISOString() })
      const total = 8_000
      for (let i = 0; i < total; i += 1_000) await producer.createMany(Array.from({ length: 1_000 }, () => ({ command: "lane" })))
      const passesDone = (async () => {
        while (passing) {
          await reconcileClaims(client.nc, naming)
          passes++
        }
      })()
      let done = 0
      const worker = client.worker("acme")
      const running = worker.run(["lane"], () => {
        done++
        return null
      }, { concurrency: 64 })
      try {
        await waitFor(() => done >= total || undefined, { timeoutMs: 120_000, what: `${total} tasks done (done ${done} so far)` })
      } finally {
        passing = false
        // A failed pass ends the loop; the count of passes below says whether enough ran.
        await passesDone.catch(() => undefined)
        await worker.stop()
        await running
      }
      expect(passes).toBeGreaterThan(5)
      // The delayed claim is still there, waiting. The last claims' acks are not confirmed by the
      // server (a claim's ack is a plain publish), so their messages may still be there for a moment:
      // wait for them to go. A purged delayed claim would take the count to 0, never 1.
      const jsm = await client.nc.jetstreamManager()
      let left = -1
      await waitFor(
        async () => {
          left = (await jsm.streams.info(claimsStream(naming))).state.messages
          return left <= 1 || undefined
        },
        { timeoutMs: 10_000, what: "the done tasks' claims gone" }
      )
      expect(left).toBe(1)
    } finally {
      passing = false
      await client.close()
      await broker.stop()
    }
  }, 180_000)

  it("starts no pass without the server, and a stop then does not wait for the pass in flight", async () => {
    const nc = await connect({ servers: nats.url(), maxReconnectAttempts: -1 })
    const naming = freshNaming()
    await provision(nc, naming)
    let up = true
    const reconciler = new ClaimReconciler(nc, naming, { connected: () => up, everyMs: 3_600_000, log: quietLogger })
    // A pass on a healthy server completes.
    await reconciler.pass()

    // The server stops answering (SIGSTOP) while a pass is in flight; the broker then sees the
    // connection gone and stops.
    await nats.server().pause()
    resumes.push(() => nats.server().resume())
    let passEnded = false
    const inFlight = reconciler.pass().then(() => {
      passEnded = true
      return "pass"
    })
    up = false
    // Without the server no new pass starts: it resolves at once, without asking anything.
    expect(await Promise.race([reconciler.pass().then(() => "new pass"), inFlight])).toBe("new pass")
    expect(await Promise.race([reconciler.stop().then(() => "stop"), inFlight])).toBe("stop")
    expect(passEnded).toBe(false)
    nats.server().resume()
    await inFlight
    await nc.close()
  })
})
