/** The EventLog contract in memory, and what the in-memory log refuses that JetStream would misread. */
import { describe, expect, it } from "vitest"
import { EVENT_SCHEMA_VERSION } from "../src/domain/events.js"
import { InMemoryEventLog } from "../src/eventlog/memory.js"
import { eventLogContract } from "./support/eventLogContract.js"

const naming = { streamPrefix: "UNIT", subjectRoot: "unit" }

eventLogContract("the in-memory event log", {
  make: async () => {
    const log = new InMemoryEventLog(naming)
    return {
      log,
      naming,
      publishRaw: async (subject, data, headers) => {
        const result = log.publishRaw(subject, data, headers)
        if (!result.ok) throw result.error
      },
      close: () => log.close()
    }
  }
})

describe("the in-memory event log", () => {
  const trace = { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tracestate: undefined, parentSpanId: undefined, spanStart: undefined }
  const cancelled = (taskId: string) => ({ v: EVENT_SCHEMA_VERSION, type: "TaskCancelled" as const, taskId, tenant: "acme", at: new Date().toISOString(), reason: "test" })

  it("refuses task ids JetStream would read as no subject or a wildcard, storing nothing", async () => {
    const log = new InMemoryEventLog(naming)
    expect((await log.append({ tenant: "acme", taskId: "t1", event: cancelled("t1"), trace, expectedSeq: 0 })).ok).toBe(true)
    for (const taskId of ["", "*", ">", "a b"]) {
      expect(await log.append({ tenant: "acme", taskId, event: cancelled(taskId), trace, expectedSeq: 0 })).toMatchObject({ ok: false, error: { _tag: "LogError", reason: "rejected" } })
      await expect(log.readTask("acme", taskId)).rejects.toMatchObject({ _tag: "LogError", reason: "read_failed" })
    }
    expect((await log.append({ tenant: "acme", taskId: "t2", event: cancelled("t2"), trace, expectedSeq: 0 })).ok && (await log.readTask("acme", "t2")).version).toBe(2)
  })

  it("takes raw messages only on its own event subjects", () => {
    const log = new InMemoryEventLog(naming)
    expect(log.publishRaw("elsewhere.evt.acme.t1", new Uint8Array())).toMatchObject({ ok: false, error: { reason: "unavailable" } })
    expect(log.publishRaw("unit.claim.acme.resize.0", new Uint8Array())).toMatchObject({ ok: false, error: { reason: "unavailable" } })
    expect(log.publishRaw("unit.evt.acme.t1", new Uint8Array())).toMatchObject({ ok: true, seq: 1 })
  })
})
