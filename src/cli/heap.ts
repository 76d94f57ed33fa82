/**
 * How far `codeq serve` lets V8's heap grow past its live data (`heapGrowthPercent`).
 *
 * WHY: after each full collection V8 sets the next one's threshold at the data it kept times a
 * factor it picks from its own speed, up to 4× in a process allowed gigabytes (a 64-bit host's
 * default). Under a backlog the broker allocates fast and keeps ~60 MB live, so V8 let its old
 * space grow to ~180 MB of mostly garbage, and the buffers that garbage held (~40–60 MB outside the
 * heap) were freed only as late. Over the bench's 200,000-task RSS run (`npm run bench -- e2e
 * --only rss`, alternated with V8's own factor, two pairs each) the broker's RSS peaked at 214–215
 * MB with 50 % against 361–379, for ~20 % more of the broker's CPU per task there (181–193 µs
 * against 155–161); 20 % peaked at 198–201 MB for ~50 % more (200–217 against 130–141). Without a
 * backlog the live data is small and collections cheap: within the noise, the broker's share of
 * the CPU a median 25.5 % against 24 % (BENCHMARKS.md, "The broker's heap growth").
 *
 * V8 reads `--heap-growing-percent` at every collection, so setting it once the process runs
 * takes effect from the next one. A `--heap-growing-percent` given on node's command line wins.
 */
import { setFlagsFromString } from "node:v8"
import { DEFAULT_HEAP_GROWTH_PERCENT } from "../config/config.js"

/** What was done with the setting. */
export type HeapGrowth =
  | { readonly applied: "set"; readonly percent: number }
  | { readonly applied: "node-flag" }
  | { readonly applied: "v8-default" }

const FLAG = /^--heap[-_]growing[-_]percent(=|$)/

/** The V8 flag that sets the growth to `percent`. */
export const heapGrowthFlag = (percent: number): string => `--heap-growing-percent=${percent}`

/**
 * Sets V8's heap growth to `percent` (default DEFAULT_HEAP_GROWTH_PERCENT) unless node's own flags
 * already set it; 0 leaves V8's heuristic. The value is BrokerConfig's, which has refused anything
 * but an integer from 0 to MAX_HEAP_GROWTH_PERCENT, naming the key.
 */
export const applyHeapGrowth = (
  percent: number = DEFAULT_HEAP_GROWTH_PERCENT,
  execArgv: ReadonlyArray<string> = process.execArgv,
  setFlags: (flags: string) => void = setFlagsFromString
): HeapGrowth => {
  if (execArgv.some((arg) => FLAG.test(arg))) return { applied: "node-flag" }
  if (percent === 0) return { applied: "v8-default" }
  setFlags(heapGrowthFlag(percent))
  return { applied: "set", percent }
}
