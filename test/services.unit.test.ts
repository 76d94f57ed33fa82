/**
 * The services as layers (src/services/services.ts): the repository built from the in-memory log
 * layer runs without a server; a connection that cannot be opened fails in the error channel with
 * ConnectFailed (typed, the client's own error inside), and nothing is left open.
 */
import { randomUUID } from "node:crypto"
import { Context, Effect, Exit, Layer } from "effect"
import { describe, expect, it } from "vitest"
import type { TaskCommand } from "../src/domain/decide.js"
import { ConnectFailed, Log, Nats, Repository, memoryLogLayer, natsLayer, repositoryLayer, tracingLayer } from "../src/services/services.js"

const naming = { streamPrefix: "SVC", subjectRoot: "svc" }
const create = (taskId: string) => (now: Date): TaskCommand => ({ type: "CreateTask", taskId, tenant: "acme", now, command: "resize", payload: {}, priority: 0, maxAttempts: 3 })

describe("services as layers", () => {
  it("builds the repository over the in-memory event log and appends through it", async () => {
    const services = repositoryLayer().pipe(Layer.provideMerge(Layer.merge(memoryLogLayer(naming), tracingLayer())))
    const taskId = randomUUID()
    const { outcome, history } = await Effect.runPromise(
      Effect.gen(function* () {
        const repo = yield* Repository
        const log = yield* Log
        const outcome = yield* Effect.promise(() => repo.apply("acme", taskId, create(taskId)))
        const history = yield* Effect.promise(() => log.readTask("acme", taskId))
        return { outcome, history }
      }).pipe(Effect.provide(services))
    )
    expect(outcome.ok).toBe(true)
    expect(history.events.map((e) => e.event.type)).toEqual(["TaskCreated"])
    expect(history.version).toBe(1)
  })

  it("fails with ConnectFailed in the error channel when nothing answers (loopback port 1)", async () => {
    const exit = await Effect.runPromiseExit(Effect.scoped(Effect.map(Layer.build(natsLayer({ servers: "nats://127.0.0.1:1", timeoutMs: 2_000 })), (services) => Context.get(services, Nats))))
    expect(Exit.isFailure(exit)).toBe(true)
    const error = Exit.isFailure(exit) ? exit.cause : undefined
    const failure = error === undefined ? undefined : Effect.runSync(Effect.flip(Effect.failCause(error)))
    expect(failure).toBeInstanceOf(ConnectFailed)
    expect((failure as ConnectFailed).servers).toBe("nats://127.0.0.1:1")
    expect((failure as ConnectFailed).message).toMatch(/^cannot connect to NATS at nats:\/\/127\.0\.0\.1:1: /)
  })
})
