/**
 * The producer's side of the webhooks run: a loopback HTTP server that takes every delivery the
 * broker makes, answers 204, and counts them by the body's task id — what the run waits on to call
 * the last task delivered.
 */
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"

export interface WebhookReceiver {
  /** The URL every task of the run carries. */
  readonly url: string
  /** Tasks delivered at least once. */
  delivered(): number
  /** Deliveries of a task already delivered. */
  duplicates(): number
  /** Requests without a task id in a JSON body (answered 400). */
  rejected(): number
  /** When the last delivery arrived (ms since the epoch; 0 before the first). */
  lastAt(): number
  /** Resolves true once `n` tasks were delivered, false at `deadline` (ms since the epoch). */
  waitFor(n: number, deadline: number): Promise<boolean>
  stop(): Promise<void>
}

export const startWebhookReceiver = async (): Promise<WebhookReceiver> => {
  const seen = new Set<string>()
  let duplicates = 0
  let rejected = 0
  let lastAt = 0
  const waiters = new Set<{ readonly n: number; readonly done: (reached: boolean) => void }>()
  const server = createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => {
      let taskId: unknown
      try {
        taskId = (JSON.parse(Buffer.concat(chunks).toString("utf8")) as { taskId?: unknown }).taskId
      } catch {
        taskId = undefined
      }
      if (typeof taskId !== "string") {
        rejected++
        res.writeHead(400).end()
        return
      }
      if (seen.has(taskId)) duplicates++
      else seen.add(taskId)
      lastAt = Date.now()
      res.writeHead(204).end()
      for (const waiter of waiters) if (seen.size >= waiter.n) waiter.done(true)
    })
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => resolve())
  })
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/hook`,
    delivered: () => seen.size,
    duplicates: () => duplicates,
    rejected: () => rejected,
    lastAt: () => lastAt,
    waitFor: (n, deadline) =>
      seen.size >= n
        ? Promise.resolve(true)
        : new Promise<boolean>((resolve) => {
            const waiter = {
              n,
              done: (reached: boolean) => {
                clearTimeout(timer)
                waiters.delete(waiter)
                resolve(reached)
              }
            }
            const timer = setTimeout(() => waiter.done(false), Math.max(0, deadline - Date.now()))
            waiters.add(waiter)
          }),
    stop: () =>
      new Promise<void>((resolve) => {
        for (const waiter of waiters) waiter.done(false)
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}
