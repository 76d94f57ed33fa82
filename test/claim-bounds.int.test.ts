/**
 * Correctness bounds on waiting (issue 10), not benchmarks: on an idle broker a created task is
 * claimable at once, and a claim's long-poll ends when its wait does — never held seconds past it
 * by a fallback timer or a slow request.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startBroker, type RunningBroker } from "../src/broker.js"
import { CodeqClient } from "../src/sdk/client.js"
import { brokerConfig, freshNaming, useNatsServer } from "./support/harness.js"

const nats = useNatsServer()
const naming = freshNaming()
let broker: RunningBroker
let client: CodeqClient

beforeAll(async () => {
  broker = await startBroker(brokerConfig(nats.url(), naming))
  client = await CodeqClient.connect({ servers: nats.url(), naming })
})
afterAll(async () => {
  await client.close()
  await broker.stop()
})

describe("waiting for claims on an idle broker", () => {
  it("claims each of 200 tasks created one after another within 250 ms of its create", async () => {
    const producer = client.producer("acme")
    const waits: Array<number> = []
    for (let i = 0; i < 200; i++) {
      const task = await producer.create({ command: "roundtrip", payload: { i } })
      const started = performance.now()
      const claimed = await client.tasks.claim("acme", ["roundtrip"], { workerId: "w", waitSeconds: 5 })
      waits.push(performance.now() - started)
      expect(claimed?.task.id).toBe(task.id)
      await client.tasks.settleLease("acme", task.id, { workerId: "w" }, { type: "complete" })
    }
    expect(Math.max(...waits)).toBeLessThan(250)
  })

  it("hands each of 200 tasks created one after another to a running SDK worker within 250 ms", async () => {
    const seen = new Map<string, number>()
    const worker = client.worker("acme", { workerId: "sdk" })
    let wake: () => void = () => undefined
    const running = worker.run(["roundtrip-sdk"], (task) => {
      seen.set(task.id, performance.now())
      wake()
      return null
    }, { concurrency: 4 })
    const producer = client.producer("acme")
    const waits: Array<number> = []
    for (let i = 0; i < 200; i++) {
      const handled = new Promise<void>((resolve) => (wake = resolve))
      const created = performance.now()
      const task = await producer.create({ command: "roundtrip-sdk" })
      await handled
      waits.push((seen.get(task.id) ?? Number.POSITIVE_INFINITY) - created)
    }
    await worker.stop()
    await running
    expect(Math.max(...waits)).toBeLessThan(250)
  })

  it("ends every long-poll within its wait plus 250 ms, with eight claimers at once", async () => {
    const overruns: Array<number> = []
    for (let round = 0; round < 3; round++) {
      await Promise.all(
        Array.from({ length: 8 }, async (_, i) => {
          const started = performance.now()
          const claimed = await client.tasks.claim("acme", [`empty-${i % 3}`], { workerId: `poller-${i}`, waitSeconds: 1 })
          expect(claimed).toBeUndefined()
          overruns.push(performance.now() - started - 1_000)
        })
      )
    }
    expect(Math.max(...overruns)).toBeLessThan(250)
    // A long-poll waits its wait out when nothing comes.
    expect(Math.min(...overruns)).toBeGreaterThan(-50)
  })
})
