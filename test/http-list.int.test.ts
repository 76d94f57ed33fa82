import { describe, expect, it } from "vitest"
import { startBroker } from "../src/broker.js"
import { startHttpServer } from "../src/http/index.js"
import { CodeqClient } from "../src/sdk/client.js"
import { brokerConfig, freshNaming, useNatsServer, waitFor } from "./support/harness.js"

const nats = useNatsServer()

describe("GET /v1/codeq/tasks (task-state read model)", () => {
  it("lists the tenant's tasks newest first, filtered by status and command, and never another tenant's", async () => {
    const naming = freshNaming()
    const broker = await startBroker(brokerConfig(nats.url(), naming))
    const client = await CodeqClient.connect({ servers: nats.url(), naming })
    const http = await startHttpServer({
      client,
      port: 0,
      host: "127.0.0.1",
      auth: {
        staticTokens: [
          { token: "list-acme-token-000", tenant: "acme", subject: "reader", role: "producer" },
          { token: "list-globex-token-00", tenant: "globex", subject: "reader", role: "producer" }
        ]
      }
    })
    const list = async (token: string, query = "") => {
      const res = await fetch(`${http.url}/v1/codeq/tasks${query}`, { headers: { authorization: `Bearer ${token}` } })
      return { status: res.status, body: (await res.json()) as { tasks: Array<{ id: string; status: string; command: string }>; count: number; field?: string } }
    }
    try {
      const producer = client.producer("acme")
      const first = await producer.create({ command: "list-a" })
      const second = await producer.create({ command: "list-a" })
      const third = await producer.create({ command: "list-b" })
      await client.producer("globex").create({ command: "list-a" })
      const claimed = await client.tasks.claim("acme", ["list-b"], { workerId: "w", waitSeconds: 10 })
      expect(claimed?.task.id).toBe(third.id)
      await client.tasks.settleLease("acme", third.id, { workerId: "w" }, { type: "complete" })

      const all = await waitFor(async () => {
        const page = await list("list-acme-token-000")
        return page.body.count === 3 && page.body.tasks.some((t) => t.status === "COMPLETED") ? page : undefined
      }, { what: "the read model to hold the three tasks" })
      expect(all.status).toBe(200)
      expect(all.body.tasks.map((t) => t.id)).toEqual([third.id, second.id, first.id])
      expect((await list("list-acme-token-000", "?status=PENDING")).body.tasks.map((t) => t.id)).toEqual([second.id, first.id])
      expect((await list("list-acme-token-000", "?command=list-b&status=COMPLETED")).body.tasks.map((t) => t.id)).toEqual([third.id])
      expect((await list("list-acme-token-000", "?limit=1")).body.tasks.map((t) => t.id)).toEqual([third.id])
      const other = await list("list-globex-token-00")
      expect(other.body.tasks.every((t) => ![first.id, second.id, third.id].includes(t.id))).toBe(true)
      const bad = await list("list-acme-token-000", "?status=DONE")
      expect(bad.status).toBe(400)
      expect(bad.body.field).toBe("status")
    } finally {
      await http.close()
      await client.close()
      await broker.stop()
    }
  })
})
