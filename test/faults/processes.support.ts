/**
 * What the process fault tests need around the real `codeq` binary (dist/, built by the global
 * setup): `codeq` commands as child processes (their output kept line by line, and
 * killed by the test that started them), a webhook receiver on loopback that can stop listening
 * and come back on the same port, and one-call HTTP helpers. Loopback only, everywhere.
 */
import { spawn, type ChildProcess } from "node:child_process"
import { createServer, type Server } from "node:http"
import { createInterface } from "node:readline"
import { freePort } from "../../src/testing/natsServer.js"
import { CODEQ_BIN } from "../support/cli.js"


export { codeqEnv } from "../support/cli.js"

export interface ChildExit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  /** Date.now() when the exit was seen. */
  readonly at: number
}

export interface CodeqChild {
  readonly proc: ChildProcess
  /** Every line written to stdout and stderr so far. */
  readonly lines: ReadonlyArray<string>
  readonly exit: Promise<ChildExit>
  readonly exited: boolean
  /** Sends `signal` and resolves when the process has exited. */
  kill(signal: NodeJS.Signals): Promise<ChildExit>
}

const running = new Set<CodeqChild>()

/** Runs `node dist/src/cli/main.js <args>`; `onLine` sees each output line as it comes. */
export const spawnCodeq = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv, onLine?: (line: string) => void): CodeqChild => {
  const proc = spawn(process.execPath, [CODEQ_BIN, ...args], { env, stdio: ["ignore", "pipe", "pipe"] })
  const lines: Array<string> = []
  for (const stream of [proc.stdout, proc.stderr]) {
    createInterface({ input: stream }).on("line", (line) => {
      lines.push(line)
      if (process.env.CODEQ_TEST_CHILD_LOGS) console.log(`[codeq ${args[0]} ${proc.pid}] ${line}`)
      onLine?.(line)
    })
  }
  let done = false
  const exit = new Promise<ChildExit>((resolve) =>
    proc.once("exit", (code, signal) => {
      done = true
      resolve({ code, signal, at: Date.now() })
    })
  )
  const child: CodeqChild = {
    proc,
    lines,
    exit,
    get exited() {
      return done
    },
    kill: async (signal) => {
      if (!done) proc.kill(signal)
      return exit
    }
  }
  running.add(child)
  void exit.then(() => running.delete(child))
  return child
}

/** SIGKILLs every codeq child this file started that is still running (for afterAll). */
export const killChildren = async (): Promise<void> => {
  await Promise.all([...running].map((child) => child.kill("SIGKILL")))
}

/** The JSON log lines of a child whose `msg` is `msg`. */
export const logLines = (lines: ReadonlyArray<string>, msg: string): Array<Record<string, unknown>> =>
  lines.flatMap((line) => {
    try {
      const parsed = JSON.parse(line) as Record<string, unknown>
      return parsed.msg === msg ? [parsed] : []
    } catch {
      return []
    }
  })

export interface ReceivedHook {
  readonly deliveryId: string
  readonly taskId: string
  readonly at: number
}

/**
 * An HTTP webhook receiver on 127.0.0.1 answering 200 after `delayMs(n)` for its n-th POST. It
 * counts POSTs received, answered and cut off (the sender died before the answer); `close()` stops
 * listening (connections refused) and `open()` listens again on the same port.
 */
export class WebhookReceiver {
  readonly received: Array<ReceivedHook> = []
  inFlight = 0
  answered = 0
  cutOff = 0
  private server: Server | undefined

  private constructor(
    readonly port: number,
    private readonly delayMs: (n: number) => number
  ) {}

  static async start(options: { readonly delayMs?: (n: number) => number } = {}): Promise<WebhookReceiver> {
    const receiver = new WebhookReceiver(await freePort(), options.delayMs ?? (() => 0))
    await receiver.open()
    return receiver
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/hook`
  }

  get listening(): boolean {
    return this.server !== undefined
  }

  open(): Promise<void> {
    const server = createServer((req, res) => {
      const chunks: Array<Buffer> = []
      req.on("data", (chunk: Buffer) => chunks.push(chunk))
      req.on("end", () => {
        let taskId = ""
        try {
          taskId = String((JSON.parse(Buffer.concat(chunks).toString()) as { taskId?: unknown }).taskId ?? "")
        } catch {
          // Recorded with an empty task id: the test's checks find it.
        }
        const n = this.received.length
        this.received.push({ deliveryId: String(req.headers["x-codeq-delivery-id"] ?? ""), taskId, at: Date.now() })
        this.inFlight++
        let settled = false
        const settle = (answered: boolean) => {
          if (settled) return
          settled = true
          this.inFlight--
          if (answered) this.answered++
          else this.cutOff++
        }
        res.once("close", () => settle(res.writableFinished))
        // The receiver's own processing time, so that POSTs are in flight when a broker dies.
        setTimeout(() => {
          res.writeHead(200, { "content-type": "application/json" })
          res.end('{"ok":true}', () => settle(true))
        }, this.delayMs(n))
      })
    })
    this.server = server
    return new Promise((resolve, reject) => {
      server.once("error", reject)
      server.listen(this.port, "127.0.0.1", () => resolve())
    })
  }

  /** Stops listening and cuts every open connection: connections are refused until `open()`. */
  async close(): Promise<void> {
    const server = this.server
    if (server === undefined) return
    this.server = undefined
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    server.closeAllConnections()
    await closed
  }

  /** Delivery id → POSTs received with it. */
  byDeliveryId(): Map<string, number> {
    const counts = new Map<string, number>()
    for (const hook of this.received) counts.set(hook.deliveryId, (counts.get(hook.deliveryId) ?? 0) + 1)
    return counts
  }
}

export interface HttpAnswer {
  readonly status: number
  readonly headers: Headers
  readonly json: Record<string, unknown> | undefined
}

/** One JSON call to a broker; a refused or cut connection rejects, so does no answer in 15 s (past a claim's 10 s wait). */
export const httpCall = async (base: string, method: string, path: string, token?: string, body?: unknown): Promise<HttpAnswer> => {
  const headers: Record<string, string> = {}
  if (token !== undefined) headers.authorization = `Bearer ${token}`
  if (body !== undefined) headers["content-type"] = "application/json"
  const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(15_000) })
  const text = await res.text()
  let json: Record<string, unknown> | undefined
  try {
    json = text === "" ? undefined : (JSON.parse(text) as Record<string, unknown>)
  } catch {
    json = undefined
  }
  return { status: res.status, headers: res.headers, json }
}
