/**
 * Appends whose ack never came (issue 13): the server stops answering mid-append (SIGSTOP), so
 * the outcome is unknown; once it answers again the append is found in the log by its own span's
 * traceparent — taken as done, never appended twice — or sent again when it is not there.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { CodeqClient } from "../src/sdk/client.js"
import { startNatsServer, type NatsServerHandle } from "../src/testing/natsServer.js"
import { freshNaming, provision, waitFor } from "./support/harness.js"
import { connect } from "nats"

let server: NatsServerHandle
beforeAll(async () => {
  server = await startNatsServer({ ownServer: true })
})
afterAll(async () => {
  server.resume()
  await server.stop()
})

describe("an append whose ack is lost", () => {
  it("is recognised in the log as its own and counted once, for a claim and for a result", async () => {
    const naming = freshNaming()
    const nc = await connect({ servers: server.url, noAsyncTraces: true })
    await provision(nc, naming)
    const client = await CodeqClient.connect({ connection: nc, naming, ackTimeoutMs: 300, resolveUnknownMs: 20_000 })
    try {
      const task = await client.producer("acme").create({ command: "lossy" })
      for (const step of ["claim", "complete"] as const) {
        const before = client.repo.unresolvedAppends
        // The state in hand, as a worker has it: the only request to the stopped server is the append.
        const known = await client.repo.load("acme", task.id)
        await server.pause()
        const applying = client.repo.apply(
          "acme",
          task.id,
          (now) =>
            step === "claim"
              ? { type: "ClaimTask", taskId: task.id, tenant: "acme", now, workerId: "w", leaseSeconds: 60, leaseHandle: "handle" }
              : { type: "CompleteTask", taskId: task.id, tenant: "acme", now, workerId: "w", result: { ok: true } },
          { known }
        )
        try {
          await waitFor(() => client.repo.unresolvedAppends > before, { what: `the ${step} to time out` })
        } finally {
          server.resume()
        }
        const applied = await applying
        expect(applied.ok, step).toBe(true)
      }
      const history = await client.log.readTask("acme", task.id)
      expect(history.events.map((e) => e.event.type)).toEqual(["TaskCreated", "TaskClaimed", "TaskCompleted"])
    } finally {
      await client.close()
      await nc.close()
    }
  })
})
