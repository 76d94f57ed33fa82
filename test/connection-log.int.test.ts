/**
 * The broker says when NATS goes away and when it is back: one warn line per disconnect and one
 * info line per reconnect, however many reconnect attempts happen in between.
 */
import { afterAll, describe, expect, it } from "vitest"
import { startBroker, type RunningBroker } from "../src/broker.js"
import { createLogger } from "../src/log/log.js"
import { brokerConfig, freshNaming, useNatsServer, waitFor } from "./support/harness.js"

const nats = useNatsServer({ ownServer: true })

interface Line {
  readonly level: string
  readonly msg: string
  readonly server?: string
  readonly component?: string
}

describe("broker: NATS connection changes in the log", () => {
  const lines: Array<Line> = []
  const logger = createLogger({ level: "debug", destination: { write: (line: string) => void lines.push(JSON.parse(line) as Line) } })
  let broker: RunningBroker | undefined
  afterAll(async () => {
    await broker?.stop()
  })

  const count = (msg: string) => lines.filter((l) => l.msg === msg).length

  it("logs each disconnect once at warn and each reconnect once at info", async () => {
    broker = await startBroker(brokerConfig(nats.url(), freshNaming()), { logger })
    expect(count("NATS disconnected; reconnecting")).toBe(0)
    for (const round of [1, 2]) {
      await nats.server().kill()
      await waitFor(() => count("NATS disconnected; reconnecting") === round, { what: `disconnect ${round} in the log` })
      // The client retries every couple of seconds meanwhile: none of that is logged.
      await new Promise((resolve) => setTimeout(resolve, 2_500))
      await nats.server().restart()
      await waitFor(() => count("NATS reconnected") === round, { timeoutMs: 30_000, what: `reconnect ${round} in the log` })
      await new Promise((resolve) => setTimeout(resolve, 500))
      expect(count("NATS disconnected; reconnecting")).toBe(round)
      expect(count("NATS reconnected")).toBe(round)
    }
    const disconnect = lines.find((l) => l.msg === "NATS disconnected; reconnecting")
    expect(disconnect).toMatchObject({ level: "warn", server: `127.0.0.1:${nats.server().port}` })
    expect(lines.find((l) => l.msg === "NATS reconnected")).toMatchObject({ level: "info" })
  })
})
