/** The publish headers written as the NATS header block: the same bytes as nats.js's, without its per-set garbage. */
import { headers, Match, MsgHdrsImpl } from "nats"
import { describe, expect, it } from "vitest"
import { WireHeaders } from "../src/eventlog/wireHeaders.js"

const decoder = new TextDecoder()

describe("WireHeaders", () => {
  it("encodes the header block nats.js would, in the order set", () => {
    const ours = new WireHeaders()
    const theirs = headers()
    for (const [key, value] of [
      ["Codeq-Event", "TaskCreated"],
      ["traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"],
      ["Nats-Expected-Last-Subject-Sequence", "0"],
      ["tracestate", " vendor=a,other=b "]
    ] as const) {
      ours.set(key, value)
      theirs.set(key, value)
    }
    expect(decoder.decode(ours.encode())).toBe(decoder.decode((theirs as MsgHdrsImpl).encode()))
    // What a receiver decodes from it.
    const back = MsgHdrsImpl.decode(ours.encode())
    expect(back.get("tracestate")).toBe("vendor=a,other=b")
    expect(back.get("Nats-Expected-Last-Subject-Sequence")).toBe("0")
  })

  it("replaces on set, keeps every value on append, and reads back", () => {
    const h = new WireHeaders()
    h.set("A", "1")
    h.append("A", "2")
    h.set("B", "x")
    expect(h.values("A")).toEqual(["1", "2"])
    expect(h.last("A")).toBe("2")
    h.set("A", "3")
    expect(h.values("A")).toEqual(["3"])
    expect(h.keys()).toEqual(["B", "A"])
    expect(h.has("a")).toBe(false)
    expect(h.has("a", Match.IgnoreCase)).toBe(true)
    expect([...h]).toEqual([
      ["B", ["x"]],
      ["A", ["3"]]
    ])
    h.delete("B")
    expect(h.get("B")).toBe("")
  })

  it("refuses a value with a line break and a malformed name, as nats.js does", () => {
    const h = new WireHeaders()
    expect(() => h.set("X", "a\r\nInjected: 1")).toThrow(/line breaks/)
    expect(() => h.set("Bad Name", "v")).toThrow(/header name/)
    expect(() => h.set("Bad:Name", "v")).toThrow(/header name/)
    // Valid names are remembered once checked; an invalid one is refused every time, by any instance.
    expect(() => new WireHeaders().set("Bad Name", "v")).toThrow(/header name/)
    const fresh = new WireHeaders()
    fresh.set("X", "1")
    fresh.set("X", "2")
    expect(fresh.values("X")).toEqual(["2"])
    expect(() => headers().set("X", "a\r\nInjected: 1")).toThrow()
    expect(decoder.decode(h.encode())).toBe("NATS/1.0\r\n\r\n")
  })
})
