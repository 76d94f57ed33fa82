/**
 * Tracing's cost when the collector is down (issue 5): the same end-to-end run — N tasks created
 * by a producer and completed by one worker through a broker — with tracing disabled, and with
 * tracing enabled against a closed port (fail open), interleaved, several runs each. Prints
 * tasks/s medians and their ratio. Spans in the enabled runs are sampled (ratio 1).
 */
import { trace } from "@opentelemetry/api"
import { startBroker } from "../../src/broker.js"
import { CodeqClient } from "../../src/sdk/client.js"
import { startNatsServer, freePort } from "../../src/testing/natsServer.js"
import { setupTracing } from "../../src/tracing/setup.js"
import { DEFAULT_STREAM_SETTINGS } from "../../streams/definitions.js"
import { DEFAULT_WEBHOOK_SETTINGS } from "../../src/webhooks/deliver.js"
import type { TracerProvider } from "@opentelemetry/api"
import { AlwaysOffSampler, BasicTracerProvider, ParentBasedSampler } from "@opentelemetry/sdk-trace-base"

const arg = (argv: ReadonlyArray<string>, name: string, fallback: number) => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? Number(argv[i + 1]) : fallback
}

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] ?? 0
}

const oneRun = async (url: string, tasks: number, run: number, provider: TracerProvider | undefined): Promise<number> => {
  const naming = { streamPrefix: `BT${run}`, subjectRoot: `bt${run}` }
  const broker = await startBroker(
    { natsUrl: url, naming, streams: DEFAULT_STREAM_SETTINGS, webhooks: DEFAULT_WEBHOOK_SETTINGS, tracing: {} },
    provider === undefined ? {} : { tracerProvider: provider }
  )
  const client = await CodeqClient.connect({ servers: url, naming, ...(provider === undefined ? {} : { tracerProvider: provider }) })
  const worker = client.worker("bench")
  let done = 0
  let finish: () => void = () => undefined
  const finished = new Promise<void>((resolve) => (finish = resolve))
  const started = performance.now()
  const running = worker.run(["job"], () => {
    if (++done === tasks) finish()
    return null
  }, { concurrency: 64 })
  await client.producer("bench").createMany(Array.from({ length: tasks }, () => ({ command: "job" })))
  await finished
  const elapsed = performance.now() - started
  await worker.stop()
  await running
  await client.close()
  await broker.stop()
  return tasks / (elapsed / 1000)
}

export const runTracingBench = async (argv: ReadonlyArray<string>): Promise<number> => {
  const tasks = arg(argv, "tasks", 1000)
  const runs = arg(argv, "runs", 5)
  const server = await startNatsServer({ ownServer: true })
  const closed = await freePort()
  const quiet = { warn: () => undefined, info: () => undefined }
  const handle = setupTracing({ tracingEnabled: true, tracingOtlpEndpoint: `127.0.0.1:${closed}`, tracingOtlpInsecure: true }, { env: {}, logger: quiet })
  const enabled = trace.getTracerProvider()
  const off: Array<number> = []
  const down: Array<number> = []
  try {
    for (let r = 0; r < runs; r++) {
      off.push(await oneRun(server.url, tasks, r * 2, silentProvider()))
      down.push(await oneRun(server.url, tasks, r * 2 + 1, enabled))
      console.error(`run ${r + 1}/${runs}: disabled ${off.at(-1)?.toFixed(0)} tasks/s, collector down ${down.at(-1)?.toFixed(0)} tasks/s`)
    }
  } finally {
    await handle.shutdown(1000)
    await server.stop()
  }
  const ratio = median(down) / median(off)
  console.log(`tracing bench: ${tasks} tasks per run, ${runs} runs each, interleaved, one worker (concurrency 64), one broker, nats-server at ${server.url}`)
  console.log(`tracing disabled:                 median ${median(off).toFixed(0)} tasks/s  (runs: ${off.map((x) => x.toFixed(0)).join(", ")})`)
  console.log(`tracing on, collector port closed: median ${median(down).toFixed(0)} tasks/s  (runs: ${down.map((x) => x.toFixed(0)).join(", ")})`)
  console.log(`ratio (down / disabled): ${ratio.toFixed(3)}; export failures counted: ${handle.exportFailures()}`)
  return 0
}

/** The provider codeq uses when tracing is disabled: ids only, nothing recorded for new roots. */
const silentProvider = (): TracerProvider => new BasicTracerProvider({ sampler: new ParentBasedSampler({ root: new AlwaysOffSampler() }) })
