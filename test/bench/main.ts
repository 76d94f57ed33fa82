/**
 * `npm run bench -- <name> [options]`: codeq's benchmarks, each measuring one claim of DESIGN §9
 * against a server of its own. The first argument picks the benchmark; an unknown or missing name
 * prints the list and exits 1. Each benchmark module is loaded only when it is asked for.
 */

interface Benchmark {
  readonly summary: string
  readonly run: (argv: ReadonlyArray<string>) => Promise<number>
}

const BENCHMARKS: ReadonlyMap<string, Benchmark> = new Map([
  [
    "append",
    {
      summary:
        "acked appends/s: PipelinedPublisher, JetStreamEventLog.append, js.publish in flight, js.publish one by one",
      run: async (argv: ReadonlyArray<string>) => (await import("./append.js")).runAppend(argv)
    }
  ],
  [
    "e2e",
    {
      summary:
        "codeq from the outside (codeq serve, SDK and HTTP clients as processes) against BullMQ and raw JetStream: tasks/s, server msgs/task, catch-up, latency, tracing cost, RSS",
      run: async (argv: ReadonlyArray<string>) => (await import("./e2e/run.js")).runE2e(argv)
    }
  ],
  [
    "publish",
    {
      summary: "client CPU a publish costs through the outbox's protocol frames against nats.js's publish message by message",
      run: async (argv: ReadonlyArray<string>) => (await import("./publish.js")).runPublishBench(argv)
    }
  ],
  [
    "queues",
    {
      summary: "queue statistics of a tenant with 10^5 tasks: from the open-task index against every task-state document",
      run: async (argv: ReadonlyArray<string>) => (await import("./queues.js")).runQueuesBench(argv)
    }
  ],
  [
    "replay",
    {
      summary: "codeq replay --audit over 10^6 realistic events in a private server: events/s and peak RSS",
      run: async (argv: ReadonlyArray<string>) => (await import("./replay.js")).runReplayBench(argv)
    }
  ],
  [
    "server-ops",
    {
      summary: "the nats-server's CPU per operation of each kind a task causes (appends, claim messages, deliveries, documents)",
      run: async (argv: ReadonlyArray<string>) => (await import("./serverOps.js")).runServerOps(argv)
    }
  ],
  [
    "tracing",
    {
      summary: "tasks/s end to end with tracing disabled against tracing on with the collector down",
      run: async (argv: ReadonlyArray<string>) => (await import("./tracing.js")).runTracingBench(argv)
    }
  ]
])

const usage = (): string =>
  [
    "usage: npm run bench -- <benchmark> [options]   (<benchmark> --help for its options)",
    "benchmarks:",
    ...[...BENCHMARKS].map(([name, benchmark]) => `  ${name.padEnd(10)} ${benchmark.summary}`)
  ].join("\n")

const main = async (argv: ReadonlyArray<string>): Promise<number> => {
  const [name, ...rest] = argv
  if (name === "--help" || name === "-h") {
    console.log(usage())
    return 0
  }
  const benchmark = name === undefined ? undefined : BENCHMARKS.get(name)
  if (benchmark === undefined) {
    if (name !== undefined) console.error(`unknown benchmark: ${name}`)
    console.error(usage())
    return 1
  }
  return benchmark.run(rest)
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (error: unknown) => {
    console.error(error)
    process.exitCode = 1
  }
)
