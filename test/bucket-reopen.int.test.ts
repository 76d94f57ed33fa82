/**
 * A bucket handle that failed to open is not kept: queue statistics asked while the server did not
 * answer fail, and the next call, once it answers again, succeeds (instead of failing for good).
 */
import { describe, expect, it } from "vitest"
import { CodeqClient } from "../src/sdk/client.js"
import { freshNaming, provision, useNatsServer } from "./support/harness.js"

const nats = useNatsServer({ ownServer: true })

describe("bucket handles", () => {
  it("opens a bucket again after a failed open, for queue statistics and listings", async () => {
    const naming = freshNaming()
    const nc = await nats.connect()
    await provision(nc, naming)
    const client = await CodeqClient.connect({ connection: nc, naming })
    try {
      // Nothing opened yet; the server stops answering for the first calls.
      await nats.server().pause()
      try {
        await expect(client.tasks.queues("acme")).rejects.toThrow()
        await expect(client.tasks.list("acme", { status: "COMPLETED" })).rejects.toThrow()
      } finally {
        nats.server().resume()
      }
      expect(await client.tasks.queues("acme")).toEqual({ commands: [], totals: { ready: 0, delayed: 0, inProgress: 0, deadLettered: 0 } })
      expect(await client.tasks.list("acme", { status: "COMPLETED" })).toEqual([])
    } finally {
      await client.close()
    }
  }, 60_000)
})
