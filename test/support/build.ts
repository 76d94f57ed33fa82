/**
 * Vitest global setup: builds `dist/` once before the tests, so the tests that run the real
 * `codeq` binary (dist/src/cli/main.js) and pack the package run what users run.
 */
import { execFileSync } from "node:child_process"

export default function setup(): void {
  execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], { stdio: "inherit" })
}
