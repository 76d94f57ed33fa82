/**
 * The shape of the code (issue 14): folders import each other without cycles, and only
 * `src/eventlog` speaks JetStream — it alone imports the NATS client or calls the connection's
 * JetStream, subscribe and request APIs. Walks the imports of `src`, `projections` and `streams`
 * as written (static `import`/`export … from` and `import()`), tests and benchmarks excluded.
 */
import { readFileSync, readdirSync } from "node:fs"
import { dirname, join, relative, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const root = fileURLToPath(new URL("../", import.meta.url))

const walk = (dir: string): ReadonlyArray<string> =>
  readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? walk(join(dir, entry.name)) : entry.name.endsWith(".ts") ? [join(dir, entry.name)] : []
  )

const sources = ["src", "projections", "streams"].flatMap(walk)
const text = new Map(sources.map((file) => [file, readFileSync(join(root, file), "utf8")]))

/** Module specifiers a file imports (static and dynamic). */
const specifiers = (source: string): ReadonlyArray<string> =>
  [...source.matchAll(/^\s*(?:import|export)\b[^"']*?\bfrom\s+["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)|^\s*import\s+["']([^"']+)["']/gm)].map(
    (m) => m[1] ?? m[2] ?? m[3] ?? ""
  )

/** Folder → folders it imports from, each with one import that shows it. */
const folderGraph = (): Map<string, Map<string, string>> => {
  const graph = new Map<string, Map<string, string>>()
  for (const [file, source] of text) {
    const from = dirname(file)
    for (const spec of specifiers(source)) {
      if (!spec.startsWith(".")) continue
      const to = dirname(relative(root, resolve(root, from, spec)))
      if (to === from) continue
      const edges = graph.get(from) ?? new Map<string, string>()
      if (!edges.has(to)) edges.set(to, `${file} imports ${spec}`)
      graph.set(from, edges)
    }
  }
  return graph
}

/** A cycle of folders (as a path that comes back to its start), or undefined. */
const findCycle = (graph: Map<string, Map<string, string>>): ReadonlyArray<string> | undefined => {
  const state = new Map<string, "open" | "done">()
  const path: Array<string> = []
  const visit = (node: string): ReadonlyArray<string> | undefined => {
    state.set(node, "open")
    path.push(node)
    for (const next of graph.get(node)?.keys() ?? []) {
      if (state.get(next) === "open") return [...path.slice(path.indexOf(next)), next]
      if (state.get(next) === undefined) {
        const found = visit(next)
        if (found !== undefined) return found
      }
    }
    path.pop()
    state.set(node, "done")
    return undefined
  }
  for (const node of graph.keys()) {
    if (state.get(node) !== undefined) continue
    const found = visit(node)
    if (found !== undefined) return found
  }
  return undefined
}

const insideEventLog = (file: string) => file.startsWith("src/eventlog/")

describe("architecture", () => {
  it("has no import cycle between folders of src, projections and streams", () => {
    const graph = folderGraph()
    expect(graph.size).toBeGreaterThan(8)
    const cycle = findCycle(graph)
    const shown = cycle?.slice(0, -1).map((folder, i) => graph.get(folder)?.get(cycle[i + 1] ?? "") ?? folder)
    expect(shown, "a cycle between folders, one import per step").toBeUndefined()
  })

  it("finds a cycle when there is one (the walk itself is checked)", () => {
    const graph = new Map([
      ["a", new Map([["b", "a→b"]])],
      ["b", new Map([["c", "b→c"]])],
      ["c", new Map([["a", "c→a"]])]
    ])
    expect(findCycle(graph)).toEqual(["a", "b", "c", "a"])
    expect(findCycle(new Map([["a", new Map([["b", ""]])]]))).toBeUndefined()
  })

  it("imports the NATS client only in src/eventlog", () => {
    const importers = sources.filter((file) => specifiers(text.get(file) ?? "").some((spec) => spec === "nats" || spec.startsWith("nats/")))
    expect(importers.length).toBeGreaterThan(5)
    expect(importers.filter((file) => !insideEventLog(file))).toEqual([])
  })

  it("calls JetStream, subscriptions and requests on a connection only in src/eventlog", () => {
    const speaking = /\.(?:jetstream|jetstreamManager|subscribe|request)\(|\$JS\.API\./
    // An HTTP/2 client's `session.request(` (the OTLP transport) is not a NATS request.
    const speakingHttp2 = /\.(?:jetstream|jetstreamManager|subscribe)\(|\$JS\.API\./
    const http2Client = (source: string) => source.includes('from "node:http2"') && !source.includes('from "nats"')
    const outside = sources.filter((file) => {
      const source = text.get(file) ?? ""
      return !insideEventLog(file) && (http2Client(source) ? speakingHttp2 : speaking).test(source)
    })
    expect(outside).toEqual([])
  })
})
