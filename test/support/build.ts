/**
 * Builds `dist/` from the sources: the code users run (`codeq` is dist/src/cli/main.js). Vitest's
 * global setup for the tests that run the real binary and pack the package, and the benchmarks
 * that measure `codeq serve` and `codeq replay` as users start them, call it first.
 */
import { execFileSync } from "node:child_process"
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"

export const buildDist = (): void => {
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")
  execFileSync(process.execPath, [tsc, "-p", fileURLToPath(new URL("../../tsconfig.build.json", import.meta.url))], { stdio: "inherit" })
}

export default function setup(): void {
  buildDist()
}
