/**
 * The SSRF guard's DNS lookup, on a resolver that answers from a table: nothing is resolved or
 * connected to, so public and link-local addresses can appear here without any traffic.
 */
import { describe, expect, it } from "vitest"
import type { LookupAddress } from "node:dns"
import { BlockedDestination, guardedLookup, isPrivateAddress, type Resolver } from "../src/webhooks/deliver.js"

const table =
  (addresses: ReadonlyArray<LookupAddress>, seen: Array<Record<string, unknown>> = []): Resolver =>
  (_hostname, options, callback) => {
    seen.push({ ...options })
    callback(null, [...addresses])
  }

interface Answer {
  readonly error: Error | null
  readonly address: string | ReadonlyArray<LookupAddress>
  readonly family: number | undefined
}

const ask = (lookup: ReturnType<typeof guardedLookup>, options: { all?: boolean; family?: number }): Promise<Answer> =>
  new Promise((resolve) => lookup("hooks.example", options, (error, address, family) => resolve({ error, address, family })))

const mixed: ReadonlyArray<LookupAddress> = [
  { address: "10.1.2.3", family: 4 },
  { address: "203.0.113.7", family: 4 },
  { address: "fe80::1", family: 6 },
  { address: "2001:db8::7", family: 6 },
  { address: "::ffff:127.0.0.1", family: 6 }
]

describe("guarded lookup", () => {
  it("answers every checked address when asked for all (Node's autoSelectFamily), dropping refused ones", async () => {
    const answer = await ask(guardedLookup(false, table(mixed)), { all: true })
    expect(answer.error).toBeNull()
    expect(answer.address).toEqual([
      { address: "203.0.113.7", family: 4 },
      { address: "2001:db8::7", family: 6 }
    ])
  })

  it("answers one checked address and its family when asked for one", async () => {
    const answer = await ask(guardedLookup(false, table(mixed)), {})
    expect(answer).toEqual({ error: null, address: "203.0.113.7", family: 4 })
  })

  it("refuses a host whose every address is private, in either shape", async () => {
    const privateOnly = mixed.filter((a) => isPrivateAddress(a.address))
    for (const all of [true, false]) {
      const answer = await ask(guardedLookup(false, table(privateOnly)), { all })
      expect(answer.error).toBeInstanceOf(BlockedDestination)
    }
  })

  it("passes every address through when private networks are allowed", async () => {
    expect((await ask(guardedLookup(true, table(mixed)), { all: true })).address).toEqual(mixed)
    expect(await ask(guardedLookup(true, table(mixed)), {})).toEqual({ error: null, address: "10.1.2.3", family: 4 })
  })

  it("always resolves every address, keeping the caller's other options", async () => {
    const seen: Array<Record<string, unknown>> = []
    await ask(guardedLookup(false, table(mixed, seen)), { family: 6 })
    expect(seen).toEqual([{ family: 6, all: true }])
  })

  it("reports a resolver error as it came, and an empty answer as not found", async () => {
    const failing: Resolver = (_hostname, _options, callback) => callback(Object.assign(new Error("getaddrinfo EAI_AGAIN"), { code: "EAI_AGAIN" }), [])
    expect((await ask(guardedLookup(false, failing), { all: true })).error).toMatchObject({ code: "EAI_AGAIN" })
    expect((await ask(guardedLookup(true, table([])), {})).error).toMatchObject({ code: "ENOTFOUND" })
  })
})

describe("private addresses", () => {
  it.each(["127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "::", "fe80::1", "fd00::1", "::ffff:10.0.0.1", "not-an-ip"])(
    "refuses %s",
    (address) => expect(isPrivateAddress(address)).toBe(true)
  )
  it.each(["203.0.113.7", "8.8.8.8", "2001:db8::7", "::ffff:203.0.113.7"])("allows %s", (address) => expect(isPrivateAddress(address)).toBe(false))
})
