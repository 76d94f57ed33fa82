import { spawnSync } from "node:child_process"
import { describe, expect, it } from "vitest"
import { applyHeapGrowth, heapGrowthFlag } from "../src/cli/heap.js"
import { BrokerConfig, DEFAULT_HEAP_GROWTH_PERCENT, MAX_HEAP_GROWTH_PERCENT } from "../src/config/config.js"
import { effectiveVariables, loadConfig } from "../src/config/configFile.js"

describe("codeq serve's heap growth (heapGrowthPercent)", () => {
  const recorder = () => {
    const set: Array<string> = []
    return { set, setFlags: (flags: string) => void set.push(flags) }
  }

  it("sets V8's heap growth to the configured percent", () => {
    const { set, setFlags } = recorder()
    expect(applyHeapGrowth(35, [], setFlags)).toEqual({ applied: "set", percent: 35 })
    expect(applyHeapGrowth(MAX_HEAP_GROWTH_PERCENT, [], setFlags)).toEqual({ applied: "set", percent: MAX_HEAP_GROWTH_PERCENT })
    expect(set).toEqual(["--heap-growing-percent=35", `--heap-growing-percent=${MAX_HEAP_GROWTH_PERCENT}`])
  })

  it("sets a flag this node's V8 knows (an unknown one would be ignored with a line on stdout)", () => {
    const known = (flag: string) => {
      const child = spawnSync(process.execPath, ["-e", `require("node:v8").setFlagsFromString(${JSON.stringify(flag)})`], { encoding: "utf8" })
      return { status: child.status, output: `${child.stdout}${child.stderr}` }
    }
    expect(known(heapGrowthFlag(DEFAULT_HEAP_GROWTH_PERCENT))).toEqual({ status: 0, output: "" })
    // The check itself: a misspelt flag is reported.
    expect(known("--heap-growing-percents=50").output).toMatch(/unrecognized flag/)
  })

  it("leaves V8's own heuristic at 0 (values out of range stop at the config: config.unit.test.ts)", () => {
    const { set, setFlags } = recorder()
    expect(applyHeapGrowth(0, [], setFlags)).toEqual({ applied: "v8-default" })
    expect(set).toEqual([])
  })

  it("leaves the setting to node's own flag when the process was started with one", () => {
    const { set, setFlags } = recorder()
    expect(applyHeapGrowth(20, ["--enable-source-maps", "--heap-growing-percent=80"], setFlags)).toEqual({ applied: "node-flag" })
    expect(applyHeapGrowth(20, ["--heap_growing_percent", "80"], setFlags)).toEqual({ applied: "node-flag" })
    expect(set).toEqual([])
    // A flag that only starts alike is not it.
    expect(applyHeapGrowth(20, ["--heap-growing-percentage=80"], setFlags)).toEqual({ applied: "set", percent: 20 })
  })

  it("defaults to DEFAULT_HEAP_GROWTH_PERCENT (50) and reads CODEQ_HEAP_GROWTH_PERCENT", async () => {
    expect(DEFAULT_HEAP_GROWTH_PERCENT).toBe(50)
    expect((await loadConfig(BrokerConfig, await effectiveVariables({}))).heapGrowthPercent).toBe(DEFAULT_HEAP_GROWTH_PERCENT)
    expect((await loadConfig(BrokerConfig, await effectiveVariables({ CODEQ_HEAP_GROWTH_PERCENT: "0" }))).heapGrowthPercent).toBe(0)
  })
})
