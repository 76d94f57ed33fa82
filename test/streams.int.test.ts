import { describe, expect, it } from "vitest"
import { RetentionPolicy, StorageType } from "nats"
import { claimsStream, eventsStream, streamDefinitions, webhooksStream, DEFAULT_STREAM_SETTINGS } from "../streams/definitions.js"
import { IncompatibleStreamError, provisionStreams } from "../src/eventlog/provision.js"
import { freshNaming, useNatsServer } from "./support/harness.js"

const nats = useNatsServer()

describe("stream provisioning", () => {
  it("creates the three streams, then reports them unchanged on a second apply", async () => {
    const naming = freshNaming()
    const nc = await nats.connect()
    const jsm = await nc.jetstreamManager()
    const first = await provisionStreams(nc, streamDefinitions(naming))
    expect(first.map((o) => [o.stream, o.action])).toEqual([[eventsStream(naming), "created"], [claimsStream(naming), "created"], [webhooksStream(naming), "created"]])
    const second = await provisionStreams(nc, streamDefinitions(naming))
    expect(second.map((o) => o.action)).toEqual(["unchanged", "unchanged", "unchanged"])
    const events = await jsm.streams.info(eventsStream(naming))
    expect(events.config).toMatchObject({ subjects: [`${naming.subjectRoot}.evt.>`], retention: RetentionPolicy.Limits, storage: StorageType.File, allow_direct: true })
    const claims = await jsm.streams.info(claimsStream(naming))
    expect(claims.config).toMatchObject({ subjects: [`${naming.subjectRoot}.claim.>`], retention: RetentionPolicy.Workqueue })
  })

  it("updates settings a stream can change in place and says which", async () => {
    const naming = freshNaming()
    const nc = await nats.connect()
    const jsm = await nc.jetstreamManager()
    await provisionStreams(nc, streamDefinitions(naming))
    const outcomes = await provisionStreams(nc, streamDefinitions(naming, { ...DEFAULT_STREAM_SETTINGS, maxAgeSeconds: 86_400 }))
    expect(outcomes[0]).toEqual({ stream: eventsStream(naming), action: "updated", changed: ["max_age"] })
    expect((await jsm.streams.info(eventsStream(naming))).config.max_age).toBe(86_400 * 1e9)
  })

  it("refuses an existing stream whose retention differs, naming the difference, and leaves it alone", async () => {
    const naming = freshNaming()
    const nc = await nats.connect()
    const jsm = await nc.jetstreamManager()
    await jsm.streams.add({ name: eventsStream(naming), subjects: [`${naming.subjectRoot}.evt.>`], retention: RetentionPolicy.Interest, storage: StorageType.File })
    const error = await provisionStreams(nc, streamDefinitions(naming)).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(IncompatibleStreamError)
    expect((error as Error).message).toContain("retention is interest, wanted limits")
    expect((await jsm.streams.info(eventsStream(naming))).config.retention).toBe(RetentionPolicy.Interest)
  })
})
