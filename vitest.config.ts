import { configDefaults, defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The fault suite has its own config (vitest.faults.config.ts), run after this one.
    exclude: [...configDefaults.exclude, "test/faults/**"],
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 60_000,
    globalSetup: ["./test/support/build.ts"],
    reporters: ["default", "./test/support/summary-reporter.ts"]
  }
})
