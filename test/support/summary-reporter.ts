/**
 * Prints the plain closing line `N passed, N failed` (plus skipped) after a run, so a CI log
 * shows at a glance whether any test executed at all. Each failed test is named first, on a line
 * of its own starting `failed: `, with the first line of its error, so that a log cut to its tail
 * still says which test failed.
 */
import type { Reporter, TestModule } from "vitest/node"

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0
    let failed = 0
    let skipped = 0
    const failures: string[] = []
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const result = test.result()
        if (result.state === "passed") passed++
        else if (result.state === "failed") {
          failed++
          const message = result.errors[0]?.message.split("\n")[0] ?? ""
          failures.push(`failed: ${module.relativeModuleId} > ${test.fullName}: ${message.slice(0, 300)}`)
        } else skipped++
      }
      if (module.state() === "failed" && [...module.children.allTests()].length === 0) {
        failed++
        const message = module.errors()[0]?.message.split("\n")[0] ?? ""
        failures.push(`failed: ${module.relativeModuleId} (the module did not run): ${message.slice(0, 300)}`)
      }
    }
    const named = failures.length > 0 ? `\n${failures.join("\n")}` : ""
    process.stdout.write(`${named}\n${passed} passed, ${failed} failed, ${skipped} skipped\n`)
  }
}
