#!/usr/bin/env node
/**
 * `npm test`: the suite (vitest.config.ts), then the fault suite (vitest.faults.config.ts) on its
 * own so its kills and restarts do not share the CPU with the rest, then one closing line with the
 * totals of both: `N passed, N failed, N skipped`. Arguments (`npm test -- test/http.int.test.ts`)
 * go to the first run only, and then the fault suite is left out.
 */
import { spawn } from "node:child_process"

const vitest = "node_modules/vitest/vitest.mjs"

/** Runs vitest with `args`, echoing its output; resolves with its exit code and closing counts. */
const run = (args) =>
  new Promise((resolve) => {
    const child = spawn(process.execPath, [vitest, "run", ...args], { stdio: ["inherit", "pipe", "inherit"] })
    let tail = ""
    child.stdout.on("data", (chunk) => {
      process.stdout.write(chunk)
      tail = (tail + chunk.toString()).slice(-4096)
    })
    child.on("close", (code) => {
      const counts = [...tail.matchAll(/(\d+) passed, (\d+) failed, (\d+) skipped/g)].pop()
      resolve({ code: code ?? 1, passed: Number(counts?.[1] ?? 0), failed: Number(counts?.[2] ?? (code === 0 ? 0 : 1)), skipped: Number(counts?.[3] ?? 0) })
    })
  })

const args = process.argv.slice(2)
const runs = [await run(args)]
if (args.length === 0) runs.push(await run(["-c", "vitest.faults.config.ts"]))
const total = runs.reduce((a, b) => ({ code: a.code || b.code, passed: a.passed + b.passed, failed: a.failed + b.failed, skipped: a.skipped + b.skipped }))
process.stdout.write(`\n${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped\n`)
process.exit(total.code)
