/**
 * One webhook POST against a real HTTP receiver on loopback: host names resolved and checked by
 * the SSRF guard, timeouts on fresh and reused keep-alive sockets, and the delivery id a receiver
 * deduplicates by. Traffic only ever goes to loopback; the guard is tested by what it refuses
 * before connecting.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { subscribe, unsubscribe } from "node:diagnostics_channel"
import { lookup } from "node:dns/promises"
import { ClientRequest, createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import type { AddressInfo, Socket } from "node:net"
import { startBroker } from "../src/broker.js"
import { CodeqClient } from "../src/sdk/client.js"
import { DEFAULT_WEBHOOK_SETTINGS, deliverWebhook, type WebhookSettings } from "../src/webhooks/deliver.js"
import { brokerConfig, freshNaming, useNatsServer, waitFor } from "./support/harness.js"

const nats = useNatsServer()

const isLoopback = (address: string): boolean => /^127\.\d+\.\d+\.\d+$/.test(address) || address === "::1"

interface Received {
  readonly headers: IncomingHttpHeaders
  /** Which connection (1, 2, …) the request arrived on. */
  readonly connection: number
}

/**
 * A real HTTP receiver on one port of every given loopback address: answers the n-th request
 * (from 1) with `status(n)` after `delayMs`, and numbers its connections so a test sees reuse.
 */
const receiver = async (addresses: ReadonlyArray<string>, options: { delayMs?: number; status?: (n: number) => number } = {}) => {
  if (addresses.length === 0 || !addresses.every(isLoopback)) throw new Error(`receiver only listens on loopback, not ${addresses.join(", ")}`)
  const requests: Array<Received> = []
  const connectionIds = new WeakMap<Socket, number>()
  let connections = 0
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    req.on("end", () => {
      requests.push({ headers: req.headers, connection: connectionIds.get(req.socket) ?? 0 })
      const status = options.status?.(requests.length) ?? 200
      // The receiver's own think time is part of the scenario, not a synchronisation.
      setTimeout(() => res.writeHead(status).end(), options.delayMs ?? 0)
    })
  }
  const servers: Array<Server> = []
  let port = 0
  for (const address of addresses) {
    const server = createServer(handle)
    server.on("connection", (socket: Socket) => connectionIds.set(socket, ++connections))
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject)
      server.listen(port, address, () => resolve())
    })
    port = (server.address() as AddressInfo).port
    servers.push(server)
  }
  return {
    port,
    requests,
    connections: () => connections,
    close: async () => {
      for (const server of servers) server.closeAllConnections()
      await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))))
    }
  }
}

const settings = (overrides: Partial<WebhookSettings>): WebhookSettings => ({ ...DEFAULT_WEBHOOK_SETTINGS, allowPrivateNetworks: true, ...overrides })
const body = JSON.stringify({ taskId: "t-1", status: "COMPLETED" })

let closeAfter: Array<() => Promise<void>> = []
afterEach(async () => {
  await Promise.all(closeAfter.map((close) => close()))
  closeAfter = []
})
const started = async (hook: Awaited<ReturnType<typeof receiver>>) => {
  closeAfter.push(hook.close)
  return hook
}

describe("webhooks to host names", () => {
  it("resolves localhost, checks its addresses and delivers to it when private networks are allowed", async () => {
    const resolved = (await lookup("localhost", { all: true })).map((a) => a.address)
    expect(resolved.every(isLoopback)).toBe(true)
    const hook = await started(await receiver(resolved))

    const outcome = await deliverWebhook(`http://localhost:${hook.port}/hook`, body, {}, settings({}))

    expect(outcome).toEqual({ delivered: true, statusCode: 200 })
    expect(hook.requests).toHaveLength(1)
  })

  it("refuses localhost before connecting when private networks are not allowed, permanently", async () => {
    const resolved = (await lookup("localhost", { all: true })).map((a) => a.address)
    const hook = await started(await receiver(resolved))

    const outcome = await deliverWebhook(`http://localhost:${hook.port}/hook`, body, {}, settings({ allowPrivateNetworks: false }))

    expect(outcome).toEqual({ delivered: false, error: "blocked_destination", permanent: true })
    expect(hook.connections()).toBe(0)
    expect(hook.requests).toHaveLength(0)
  })

  it("never lends a socket opened with private networks allowed to a request that forbids them", async () => {
    const resolved = (await lookup("localhost", { all: true })).map((a) => a.address)
    const hook = await started(await receiver(resolved))
    const url = `http://localhost:${hook.port}/hook`

    const allowed = await deliverWebhook(url, body, {}, settings({}))
    const forbidden = await deliverWebhook(url, body, {}, settings({ allowPrivateNetworks: false }))

    expect(allowed).toEqual({ delivered: true, statusCode: 200 })
    expect(forbidden).toEqual({ delivered: false, error: "blocked_destination", permanent: true })
    expect(hook.connections()).toBe(1)
    expect(hook.requests).toHaveLength(1)
  })
})

describe("webhook timeouts on keep-alive sockets", () => {
  it("delivers an answer slower than the connect timeout on a fresh socket and again on the reused one", async () => {
    const hook = await started(await receiver(["127.0.0.1"], { delayMs: 600 }))
    const slow = settings({ connectTimeoutMs: 300, responseTimeoutMs: 3_000 })
    const url = `http://127.0.0.1:${hook.port}/hook`

    const fresh = await deliverWebhook(url, body, {}, slow)
    const reused = await deliverWebhook(url, body, {}, slow)

    expect([fresh, reused]).toEqual([
      { delivered: true, statusCode: 200 },
      { delivered: true, statusCode: 200 }
    ])
    expect(hook.requests.map((r) => r.connection)).toEqual([1, 1])
  })

  describe("30 deliveries on one reused socket", () => {
    const warnings: Array<Error> = []
    const onWarning = (warning: Error) => warnings.push(warning)
    /** Listener counts on the client socket of each request to the receiver, when its response arrived. */
    const listenersAtResponse: Array<Record<string, number>> = []
    const clientSockets = new Set<Socket>()
    const onResponse = (message: unknown) => {
      const request = (message as { readonly request?: unknown }).request
      if (!(request instanceof ClientRequest) || request.getHeader("x-test-probe") !== "keep-alive") return
      const socket = request.socket
      if (socket === null) return
      clientSockets.add(socket)
      listenersAtResponse.push(Object.fromEntries(socket.eventNames().map((name) => [String(name), socket.listenerCount(name)])))
    }
    beforeAll(() => {
      process.on("warning", onWarning)
      subscribe("http.client.response.finish", onResponse)
    })
    afterAll(() => {
      process.off("warning", onWarning)
      unsubscribe("http.client.response.finish", onResponse)
    })

    it("warns of no listener leak and leaves each request's listeners no longer than the request", async () => {
      const hook = await started(await receiver(["127.0.0.1"]))
      const url = `http://127.0.0.1:${hook.port}/hook`
      const outcomes = []
      for (let i = 0; i < 30; i++) outcomes.push(await deliverWebhook(url, body, { "x-test-probe": "keep-alive" }, settings({})))

      expect(outcomes.every((o) => o.delivered)).toBe(true)
      expect(new Set(hook.requests.map((r) => r.connection))).toEqual(new Set([1]))
      expect(clientSockets.size).toBe(1)
      expect(warnings.filter((w) => w.name === "MaxListenersExceededWarning").map((w) => w.message)).toEqual([])
      // Every reused-socket request (2nd to 30th) sees the same listeners: none piles up.
      expect(listenersAtResponse).toHaveLength(30)
      for (const counts of listenersAtResponse.slice(2)) expect(counts).toEqual(listenersAtResponse[1])
    })
  })
})

describe("webhook delivery id", () => {
  it("sends the same X-CodeQ-Delivery-Id, from the task and its terminal event, on every retry of one delivery", async () => {
    const naming = freshNaming()
    const hook = await started(await receiver(["127.0.0.1"], { status: (n) => (n <= 2 ? 500 : 200) }))
    const broker = await startBroker(brokerConfig(nats.url(), naming, { baseDelaySeconds: 0.2, maxDelaySeconds: 0.5 }))
    const c = await CodeqClient.connect({ servers: nats.url(), naming })
    try {
      const task = await c.producer("acme").create({ command: "render", webhook: `http://127.0.0.1:${hook.port}/hook` })
      await c.tasks.claim("acme", ["render"], { workerId: "w", waitSeconds: 10 })
      await c.tasks.settleLease("acme", task.id, { workerId: "w" }, { type: "complete", result: { pages: 1 } })
      const history = await waitFor(async () => {
        const h = await c.log.readTask("acme", task.id)
        return h.events.some((e) => e.event.type === "WebhookDelivered") ? h : undefined
      }, { what: "the delivery" })

      const completedSeq = history.events.find((e) => e.event.type === "TaskCompleted")?.seq
      expect(completedSeq).toBeGreaterThan(0)
      const expected = `${task.id}:${String(completedSeq)}`
      expect(hook.requests.map((r) => r.headers["x-codeq-delivery-id"])).toEqual([expected, expected, expected])
    } finally {
      await broker.stop()
      await c.close()
    }
  })
})
