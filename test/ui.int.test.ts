/**
 * The operator page (issue 15) in headless Chromium, against a real broker: tasks retried with
 * nacks, dead-lettered and delivered to a webhook receiver on loopback are made through the API;
 * the page signs in with a token, finds a task by id, trace id and idempotency key, shows its
 * timeline and its span tree (remote parent, bars, audit problems), the queue overview and the
 * dead-letter queue, requeues and purges as an admin, and never shows another tenant's data. The
 * page runs under its own Content-Security-Policy; axe-core checks it in the same browser run.
 *
 * Needs Debian's chromium at /usr/bin/chromium (.ci/run installs it). Screenshots go to
 * test/artifacts/; with CODEQ_DOCS_SCREENSHOT=1 the README's docs/operator-page.png is rewritten.
 */
import { randomBytes } from "node:crypto"
import { mkdir, readFile, readdir } from "node:fs/promises"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { headers } from "nats"
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startBroker, type RunningBroker } from "../src/broker.js"
import { startHttpServer, type RunningHttpServer } from "../src/http/index.js"
import { CodeqClient } from "../src/sdk/client.js"
import { setupTracing } from "../src/tracing/setup.js"
import { eventSubject } from "../streams/definitions.js"
import { brokerConfig, freshNaming, useNatsServer, waitFor } from "./support/harness.js"
import { STATIC_TOKENS, apiClient, type ApiCall } from "./support/jwks.js"

const nats = useNatsServer()
const naming = freshNaming()
const JAEGER = "http://jaeger.test:16686"
const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
const ARTIFACTS = new URL("./artifacts/", import.meta.url)

const admin = STATIC_TOKENS.acmeAdmin.token
const producer = STATIC_TOKENS.acmeProducer.token
const worker = STATIC_TOKENS.acmeWorker.token

/** A webhook receiver on loopback: answers 503 to a task's first call and 200 after. */
const startReceiver = async () => {
  const calls = new Map<string, number>()
  const server: Server = createServer((req, res) => {
    const n = (calls.get(req.url ?? "") ?? 0) + 1
    calls.set(req.url ?? "", n)
    req.resume()
    res.writeHead(n === 1 ? 503 : 200).end()
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise<void>((resolve) => server.close(() => resolve())) }
}

const hex = (bytes: number) => randomBytes(bytes).toString("hex")

describe("the operator page at /ui", () => {
  let broker: RunningBroker
  let client: CodeqClient
  let http: RunningHttpServer
  let receiver: Awaited<ReturnType<typeof startReceiver>>
  let call: ApiCall
  let browser: Browser
  let context: BrowserContext
  let page: Page
  const pageErrors: Array<string> = []
  const requestedUrls: Array<string> = []

  /** Task ids by role in the story. */
  const ids = { retried: "", deadA: "", deadB: "", broken: "", foreign: "" }
  const traceId = hex(16)
  const remoteParent = hex(8)
  const idempotencyKey = `order-${hex(4)}`
  const hostileReason = `<img src=x onerror="window.__xss=1">flaky upstream`

  const claim = async (command: string): Promise<string> => {
    const res = await call("POST", "/v1/codeq/tasks/claim", { token: worker, body: { commands: [command], waitSeconds: 10 } })
    expect(res.status).toBe(200)
    return String(res.json.id)
  }

  const eventTypes = async (id: string): Promise<Array<string>> =>
    ((await call("GET", `/v1/codeq/tasks/${id}/events`, { token: producer })).json.events as Array<{ type: string }>).map((e) => e.type)

  beforeAll(async () => {
    // Tracing off, as by default; the propagator is installed all the same, so the inbound trace flows.
    setupTracing({}, { env: {}, logger: { warn: () => undefined, info: () => undefined } })
    receiver = await startReceiver()
    broker = await startBroker(brokerConfig(nats.url(), naming, { baseDelaySeconds: 0, maxDelaySeconds: 0 }))
    client = await CodeqClient.connect({ servers: nats.url(), naming })
    http = await startHttpServer({ client, auth: { staticTokens: Object.values(STATIC_TOKENS) }, port: 0, host: "127.0.0.1", ui: { jaegerUrl: JAEGER } })
    call = apiClient(http.url)

    // A task under an inbound trace, nacked twice (once with markup in its reason), then completed; its webhook fails once.
    const created = await call("POST", "/v1/codeq/tasks", {
      token: producer,
      body: { command: "ui-render", payload: { order: 42, note: "acme-payload-marker" }, webhook: `${receiver.url}/hook/acme`, idempotencyKey },
      headers: { traceparent: `00-${traceId}-${remoteParent}-01` }
    })
    expect(created.status).toBe(202)
    ids.retried = String(created.json.id)
    for (const reason of [hostileReason, "timeout talking to the ledger"]) {
      expect(await claim("ui-render")).toBe(ids.retried)
      expect((await call("POST", `/v1/codeq/tasks/${ids.retried}/nack`, { token: worker, body: { delaySeconds: 1, reason } })).json.status).toBe("requeued")
    }
    expect(await claim("ui-render")).toBe(ids.retried)
    expect((await call("POST", `/v1/codeq/tasks/${ids.retried}/result`, { token: worker, body: { status: "COMPLETED", result: { ok: true } } })).status).toBe(200)

    // Two dead letters: one attempt each, nacked.
    for (const key of ["deadA", "deadB"] as const) {
      const dead = await call("POST", "/v1/codeq/tasks", { token: producer, body: { command: "ui-dead", maxAttempts: 1 } })
      ids[key] = String(dead.json.id)
      expect(await claim("ui-dead")).toBe(ids[key])
      expect((await call("POST", `/v1/codeq/tasks/${ids[key]}/nack`, { token: worker, body: { reason: "poison message" } })).json.status).toBe("dlq")
    }

    // Waiting work: two lanes and a delayed task.
    for (const body of [{ priority: 0 }, { priority: 5 }, { priority: 5, delaySeconds: 3600 }])
      expect((await call("POST", "/v1/codeq/tasks", { token: producer, body: { command: "ui-queued", ...body } })).status).toBe(202)

    // A task with an event appended by hand whose parent span is no span of the task: an audit problem.
    const broken = await call("POST", "/v1/codeq/tasks", { token: producer, body: { command: "ui-broken" } })
    ids.broken = String(broken.json.id)
    expect(await claim("ui-broken")).toBe(ids.broken)
    const history = await client.log.readTask("acme", ids.broken)
    const brokenTrace = history.events[0]?.trace?.traceparent.split("-")[1] ?? ""
    const h = headers()
    h.set("Codeq-Event", "TaskCancelled")
    h.set("traceparent", `00-${brokenTrace}-${hex(8)}-01`)
    h.set("Codeq-Parent-Span", hex(8))
    h.set("Codeq-Span-Start", `${BigInt(Date.now()) * 1_000_000n}`)
    h.set("Codeq-Prev-Seq", String(history.version))
    const body = { v: 1, type: "TaskCancelled", taskId: ids.broken, tenant: "acme", at: new Date().toISOString(), reason: "by hand" }
    await client.nc.jetstream().publish(eventSubject(naming, "acme", ids.broken), JSON.stringify(body), { headers: h, expect: { lastSubjectSequence: history.version } })

    // Another tenant's task, with contents the acme page must never show.
    const foreign = await call("POST", "/v1/codeq/tasks", {
      token: STATIC_TOKENS.globexProducer.token,
      body: { command: "ui-foreign", payload: { secret: "globex-payload-marker" }, webhook: "https://hooks.globex.test/globex-hook-marker" }
    })
    ids.foreign = String(foreign.json.id)

    // The webhook's retry landed, and the read model (task list, queues, dead letters) caught up.
    await waitFor(async () => (await eventTypes(ids.retried)).includes("WebhookDelivered"), { what: "the webhook delivered" })
    await waitFor(async () => ((await call("GET", `/v1/codeq/tasks?traceId=${traceId}`, { token: producer })).json.count === 1 ? true : undefined), { what: "the task list" })
    await waitFor(async () => ((await call("GET", "/v1/codeq/admin/dlq", { token: admin })).json.count === 2 ? true : undefined), { what: "two dead letters" })
    await waitFor(async () => {
      const totals = (await call("GET", "/v1/codeq/admin/queues", { token: admin })).json.totals as { ready: number; delayed: number }
      return totals.ready === 2 && totals.delayed === 1
    }, { what: "the queue counts" })

    await mkdir(ARTIFACTS, { recursive: true })
    browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS })
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
    page = await context.newPage()
    page.on("pageerror", (error) => pageErrors.push(error.message))
    page.on("console", (message) => {
      if (message.type() === "error") pageErrors.push(message.text())
    })
    page.on("request", (request) => requestedUrls.push(request.url()))
  }, 120_000)

  afterAll(async () => {
    await browser?.close()
    await http?.close()
    await client?.close()
    await broker?.stop()
    await receiver?.close()
  })

  const signIn = async (target: Page, token: string) => {
    await target.fill("#token", token)
    await target.click("#sign-in-form button[type=submit]")
    await target.waitForSelector("#app:not([hidden])")
  }

  const search = async (target: Page, kind: "task" | "trace" | "key", value: string) => {
    await target.selectOption("#search-kind", kind)
    await target.fill("#search-value", value)
    await target.click("#search-form button[type=submit]")
  }

  const openTask = async (target: Page, id: string) => {
    await search(target, "task", id)
    await target.waitForSelector(`#task-title:text-is("Task ${id}")`)
    await target.waitForSelector("#timeline tr[data-event]")
  }

  const column = (name: string) => page.$$eval(`#timeline tr[data-event] td[data-col=${name}]`, (cells) => cells.map((c) => c.textContent ?? ""))

  it("serves the page and its modules without a token, under a policy that allows only its own origin", async () => {
    const shell = await fetch(`${http.url}/ui`)
    expect(shell.status).toBe(200)
    expect(shell.headers.get("content-type")).toMatch(/^text\/html/)
    expect(shell.headers.get("content-security-policy")).toMatch(/default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'/)
    expect(shell.headers.get("x-content-type-options")).toBe("nosniff")
    expect(await shell.text()).toContain(`<script type="module" src="/ui/main.js">`)
    for (const asset of ["main.js", "api.js", "dom.js", "tree.js", "timeline.js", "queues.js", "style.css"]) expect((await fetch(`${http.url}/ui/${asset}`)).status, asset).toBe(200)
    for (const bad of ["nope.js", "main.js.map", "..%2F..%2Fhttp%2Fserver.js", "api.d.ts"]) expect((await fetch(`${http.url}/ui/${bad}`)).status, bad).toBe(404)
    expect((await call("GET", "/v1/codeq/ui/session")).status).toBe(401)
    // The page's routes are not the API: the OpenAPI document lists the session route only.
    const paths = Object.keys((await call("GET", "/v1/codeq/openapi.json")).json.paths as object)
    expect(paths).toContain("/v1/codeq/ui/session")
    expect(paths.filter((p) => p.startsWith("/ui"))).toEqual([])
  })

  it("builds every node from text: no module of the page parses markup", async () => {
    const dir = new URL("../dist/src/ui/", import.meta.url)
    const modules = (await readdir(dir)).filter((f) => f.endsWith(".js"))
    expect(modules).toContain("main.js")
    // Comments may name what the code must not do; the code itself may not do it.
    const code = async (file: string) => (await readFile(new URL(file, dir), "utf8")).replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "")
    for (const file of modules) expect(await code(file), file).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|localStorage|sessionStorage|document\.cookie/)
  })

  it("signs in with a token it keeps in memory only, refusing an unknown one", async () => {
    await page.goto(`${http.url}/ui`)
    await page.waitForSelector("html[data-ready]")
    await page.fill("#token", "not-a-known-token-at-all")
    await page.click("#sign-in-form button[type=submit]")
    await page.waitForSelector("#sign-in-error:has-text('unknown token')")
    expect(await page.isHidden("#app")).toBe(true)
    await signIn(page, admin)
    expect(await page.textContent("#identity-text")).toBe("tenant acme · admin · acme-admin")
    expect(await page.inputValue("#token")).toBe("")
    const stored = await page.evaluate(() => ({ local: localStorage.length, session: sessionStorage.length, cookie: document.cookie, url: location.href }))
    expect(stored).toEqual({ local: 0, session: 0, cookie: "", url: `${http.url}/ui` })
  })

  it("finds a task by id and shows its timeline: attempts, workers, leases, delays, reasons and webhook outcomes", async () => {
    await openTask(page, ids.retried)
    const types = await page.$$eval("#timeline tr[data-event]", (rows) => rows.map((r) => r.getAttribute("data-event")))
    expect(types).toEqual(["TaskCreated", "TaskClaimed", "TaskNacked", "TaskClaimed", "TaskNacked", "TaskClaimed", "TaskCompleted", "WebhookFailed", "WebhookDelivered"])
    expect(await column("attempt")).toEqual(["", "1", "1", "2", "2", "3", "3", "", ""])
    expect((await column("worker")).slice(1, 7)).toEqual(Array(6).fill("acme-worker-1"))
    const leases = await column("lease")
    for (const i of [1, 3, 5]) expect(leases[i]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$/)
    expect((await column("delay"))[2]).toBe("1 s")
    // The nack reason with markup in it is shown as the characters it is, and nothing ran.
    expect((await column("reason"))[2]).toBe(hostileReason)
    expect(await page.locator("img").count()).toBe(0)
    expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined()
    const webhook = await column("webhook")
    expect(webhook[7]).toBe("failed: status · HTTP 503 · attempt 1 · will retry")
    expect(webhook[8]).toBe("delivered · HTTP 200 · attempt 2")
    // Its own tenant's task: payload and webhook URL are there to read.
    const summary = await page.textContent("#task-body dl.summary")
    expect(summary).toContain("acme-payload-marker")
    expect(summary).toContain(`${receiver.url}/hook/acme`)
    expect(await page.textContent("#task-body [data-field=status]")).toBe("COMPLETED")
  })

  it("draws the span tree rebuilt from the log: the remote parent marked, durations as bars, a link to Jaeger", async () => {
    // The create's parent is the HTTP server's span of the create request, itself under the caller's.
    const trace = (await call("GET", `/v1/codeq/tasks/${ids.retried}/trace`, { token: producer })).json
    expect(trace.traceId).toBe(traceId)
    const root = page.locator("#tree ul.tree > li").first()
    expect(await root.getAttribute("data-span-name")).toBe("codeq.task.create")
    expect(await root.locator(":scope > .span-row [data-remote-parent]").getAttribute("data-remote-parent")).toBe(trace.remoteParentSpanId)
    expect(await page.locator("#tree ul.tree > li").count()).toBe(1)
    // Transitions under the create; the webhook's attempts under the result that triggered them.
    const children = await root.locator(":scope > ul > li").evaluateAll((items) =>
      items.map((li) => [li.getAttribute("data-span-name"), ...Array.from(li.querySelectorAll(":scope > ul > li")).map((kid) => kid.getAttribute("data-span-name"))].join(" > "))
    )
    expect(children).toEqual([
      "codeq.task.claim",
      "codeq.task.nack",
      "codeq.task.claim",
      "codeq.task.nack",
      "codeq.task.claim",
      "codeq.task.submit_result > codeq.webhook.task_result > codeq.webhook.task_result"
    ])
    expect(await root.locator("li[data-span-name='codeq.webhook.task_result'] .badge.status-error").count()).toBe(1)
    const bars = await page.$$eval("#tree .bar", (elements) => elements.map((e) => ({ left: parseFloat((e as HTMLElement).style.left), width: parseFloat((e as HTMLElement).style.width) })))
    expect(bars).toHaveLength(9)
    for (const bar of bars) {
      expect(bar.left).toBeGreaterThanOrEqual(0)
      expect(bar.left + bar.width).toBeLessThanOrEqual(100.01)
    }
    // The bars run along the task's life: the last span starts well right of the first.
    expect(bars[bars.length - 1]?.left ?? 0).toBeGreaterThan(50)
    expect(await page.$$eval("#tree .duration", (cells) => cells.every((c) => /\d (µs|ms|s)$/.test(c.textContent ?? "")))).toBe(true)
    expect(await page.locator("#tree [data-audit=clean]").count()).toBe(1)
    const jaeger = page.locator("#tree a[data-jaeger]")
    expect(await jaeger.getAttribute("href")).toBe(`${JAEGER}/trace/${traceId}`)
    expect(await jaeger.getAttribute("rel")).toBe("noopener noreferrer")
    expect(await page.textContent("#tree [data-trace-id]")).toBe(traceId)
  })

  it("highlights the problems the audit finds on the spans they concern", async () => {
    await openTask(page, ids.broken)
    expect(await page.locator("#tree [data-audit=problems]").count()).toBe(1)
    const flagged = page.locator("#tree .span-row.has-problem")
    expect(await flagged.count()).toBeGreaterThanOrEqual(1)
    expect(await flagged.first().textContent()).toMatch(/problem/)
    expect(await page.textContent("#tree")).toMatch(/not in the log/)
  })

  it("finds a task by its trace id and by its idempotency key, which never appears in a URL", async () => {
    await search(page, "trace", traceId)
    await page.waitForSelector(`#task-title:text-is("Task ${ids.retried}")`)
    await openTask(page, ids.broken)
    await search(page, "key", idempotencyKey)
    await page.waitForSelector(`#task-title:text-is("Task ${ids.retried}")`)
    await search(page, "key", "no-such-key")
    await page.waitForSelector("#search-error:has-text('No task with this idempotency key in tenant acme')")
    await search(page, "trace", "0".repeat(31) + "1")
    await page.waitForSelector("#search-error:has-text('No task of trace')")
    expect(requestedUrls.filter((url) => url.includes(idempotencyKey))).toEqual([])
  })

  it("shows the queue overview per command and lane, with the dead letters", async () => {
    await page.click("#queues-refresh")
    await page.waitForSelector("#queues-body tr[data-command='ui-queued'][data-lane='5']")
    const counts = (command: string, lane: string) =>
      page.$$eval(`#queues-body tr[data-command='${command}'][data-lane='${lane}'] td[data-col]`, (cells) => Object.fromEntries(cells.map((c) => [c.getAttribute("data-col"), c.textContent])))
    expect(await counts("ui-queued", "all")).toEqual({ ready: "2", delayed: "1", inProgress: "0", deadLettered: "0" })
    expect(await counts("ui-queued", "5")).toEqual({ ready: "1", delayed: "1", inProgress: "0", deadLettered: "" })
    expect(await counts("ui-queued", "0")).toEqual({ ready: "1", delayed: "0", inProgress: "0", deadLettered: "" })
    expect(await counts("ui-dead", "all")).toMatchObject({ deadLettered: "2" })
    const dlq = await page.$$eval("#queues-body tr[data-task-id]", (rows) => rows.map((r) => r.getAttribute("data-task-id")))
    expect(dlq.sort()).toEqual([ids.deadA, ids.deadB].sort())
  })

  it("passes axe-core with no serious or critical violation, signed in with a task and the queues on screen", async () => {
    // axe is injected as a script tag, which the page's policy refuses: this page alone bypasses it.
    const axeContext = await browser.newContext({ viewport: { width: 1280, height: 900 }, bypassCSP: true })
    try {
      const axePage = await axeContext.newPage()
      await axePage.goto(`${http.url}/ui`)
      await axePage.waitForSelector("html[data-ready]")
      await axePage.addScriptTag({ path: "node_modules/axe-core/axe.min.js" })
      type Violation = { id: string; impact: string | null; help: string; nodes: Array<unknown> }
      const run = () => axePage.evaluate(async () => (await (window as unknown as { axe: { run(): Promise<{ violations: Array<Violation>; passes: Array<unknown> }> } }).axe.run()))
      const signInResult = await run()
      await signIn(axePage, admin)
      await axePage.waitForSelector("#queues-body table")
      await openTask(axePage, ids.retried)
      const appResult = await run()
      const summary = [signInResult, appResult].map((r) => ({ passes: r.passes.length, violations: r.violations.map((v) => `${v.impact ?? "?"} ${v.id}: ${v.help} (${v.nodes.length})`) }))
      console.log(`axe-core: ${JSON.stringify(summary)}`)
      for (const result of [signInResult, appResult]) expect(result.violations.filter((v) => v.impact === "serious" || v.impact === "critical").map((v) => `${v.impact} ${v.id}: ${v.help}`)).toEqual([])
      await axePage.screenshot({ path: new URL("operator-page.png", ARTIFACTS).pathname, fullPage: true })
      if (process.env.CODEQ_DOCS_SCREENSHOT === "1") await axePage.screenshot({ path: new URL("../docs/operator-page.png", import.meta.url).pathname, fullPage: true })
    } finally {
      await axeContext.close()
    }
  })

  it("requeues and purges dead letters as an admin", async () => {
    const row = page.locator(`#queues-body tr[data-task-id='${ids.deadA}']`)
    await row.locator("button[data-action=requeue]").click()
    await page.waitForSelector(`#status:has-text("Requeued task ${ids.deadA}")`)
    expect(await row.count()).toBe(0)
    expect((await call("GET", `/v1/codeq/tasks/${ids.deadA}`, { token: producer })).json.status).toBe("PENDING")
    expect(await eventTypes(ids.deadA)).toContain("TaskRequeued")

    page.once("dialog", (dialog) => void dialog.accept())
    await page.locator(`#queues-body tr[data-task-id='${ids.deadB}'] button[data-action=purge]`).click()
    await page.waitForSelector(`#status:has-text("Purged task ${ids.deadB}")`)
    expect(await eventTypes(ids.deadB)).toContain("TaskPurged")
    const left = (await call("GET", "/v1/codeq/admin/dlq", { token: admin })).json.items as Array<{ taskId: string }>
    expect(left.map((i) => i.taskId)).not.toContain(ids.deadB)
    await page.screenshot({ path: new URL("operator-page-after-requeue.png", ARTIFACTS).pathname, fullPage: true })
  })

  it("shows an admin another tenant's task without its payload, webhook, result or attributes", async () => {
    await openTask(page, ids.foreign)
    expect(await page.getAttribute("#task-body [data-foreign]", "data-foreign")).toBe("globex")
    const text = (await page.textContent("#task-body")) ?? ""
    expect(text).toContain("ui-foreign")
    for (const secret of ["globex-payload-marker", "globex-hook-marker", "hooks.globex.test"]) expect(text).not.toContain(secret)
    expect(await page.locator("#task-body details").count()).toBe(0)
  })

  it("gives a producer's token its own tenant's tasks only, and no dead-letter actions", async () => {
    await page.click("#sign-out")
    await page.waitForSelector("#sign-in:not([hidden])")
    expect(await page.isHidden("#app")).toBe(true)
    await signIn(page, producer)
    await page.waitForSelector("#queues-body [data-queues=needs-admin]")
    expect(await page.locator("button[data-action]").count()).toBe(0)
    await search(page, "task", ids.foreign)
    await page.waitForSelector(`#search-error:has-text("No task ${ids.foreign} in tenant acme")`)
    expect(await page.isHidden("#task")).toBe(true)
    await openTask(page, ids.retried)
    // The API refuses the admin route to this token whatever the page shows.
    const status = await page.evaluate(
      async ({ id, token }) => (await fetch(`/v1/codeq/admin/dlq/${id}/requeue`, { method: "POST", headers: { Authorization: `Bearer ${token}` } })).status,
      { id: ids.deadA, token: producer }
    )
    expect(status).toBe(403)
  })

  it("ran without a script error or a Content-Security-Policy violation", () => {
    expect(pageErrors.filter((e) => !/status of (401|403|404) /.test(e))).toEqual([])
  })
})
