#!/usr/bin/env node
/**
 * `npm test`: the suite (vitest.config.ts), then the fault suite (vitest.faults.config.ts) on its
 * own so its kills and restarts do not share the CPU with the rest, then one closing line with the
 * totals of both: `N passed, N failed, N skipped`, after the `failed: ` lines of both (each failed
 * test, named by the summary reporter) so a log cut to its tail still says which failed. Arguments (`npm test -- test/http.int.test.ts`)
 * go to the first run only, and then the fault suite is left out.
 */
import { spawn } from "node:child_process"

const vitest = "node_modules/vitest/vitest.mjs"

/**
 * Runs vitest with `args`, echoing its output; resolves with its exit code, closing counts and
 * the summary reporter's `failed: ` lines.
 */
const run = (args) =>
  new Promise((resolve) => {
    const child = spawn(process.execPath, [vitest, "run", ...args], { stdio: ["inherit", "pipe", "inherit"] })
    let tail = ""
    const failures = []
    let partial = ""
    child.stdout.on("data", (chunk) => {
      process.stdout.write(chunk)
      const text = chunk.toString()
      tail = (tail + text).slice(-4096)
      const lines = (partial + text).split("\n")
      partial = lines.pop() ?? ""
      for (const line of lines) if (line.startsWith("failed: ")) failures.push(line)
    })
    child.on("close", (code) => {
      const counts = [...tail.matchAll(/(\d+) passed, (\d+) failed, (\d+) skipped/g)].pop()
      resolve({ failures, code: code ?? 1, passed: Number(counts?.[1] ?? 0), failed: Number(counts?.[2] ?? (code === 0 ? 0 : 1)), skipped: Number(counts?.[3] ?? 0) })
    })
  })

const args = process.argv.slice(2)
const runs = [await run(args)]
if (args.length === 0) runs.push(await run(["-c", "vitest.faults.config.ts"]))
const total = runs.reduce((a, b) => ({ failures: [...a.failures, ...b.failures], code: a.code || b.code, passed: a.passed + b.passed, failed: a.failed + b.failed, skipped: a.skipped + b.skipped }))
for (const line of total.failures) process.stdout.write(`\n${line}`)
process.stdout.write(`\n${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped\n`)
process.exit(total.code)
