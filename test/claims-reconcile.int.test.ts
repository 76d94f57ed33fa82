/**
 * The claim reconciler (src/eventlog/claims/reconcile.ts) never holds a broker's stop when the
 * server is gone: a pass in flight then only waits out its request timeouts.
 */
import { connect } from "nats"
import { afterAll, describe, expect, it } from "vitest"
import { ClaimReconciler } from "../src/eventlog/claims/reconcile.js"
import { freshNaming, provision, quietLogger, useNatsServer } from "./support/harness.js"

const nats = useNatsServer({ ownServer: true })

describe("claim reconciler", () => {
  const resumes: Array<() => void> = []
  afterAll(() => {
    for (const resume of resumes) resume()
  })

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
    nats.server().pause()
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
