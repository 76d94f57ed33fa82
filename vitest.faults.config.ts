/**
 * The fault suite (issue 13): real nats-servers and brokers killed, paused and restarted, run one
 * file at a time so their timings do not fight over the CPU. `npx vitest run -c vitest.faults.config.ts`
 * (`.ci/run` calls it after `npm test`).
 */
import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/faults/**/*.fault.test.ts"],
    pool: "forks",
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 60_000,
    globalSetup: ["./test/support/build.ts"],
    reporters: ["default", "./test/support/summary-reporter.ts"]
  }
})
