/**
 * One webhook POST: destination checks (private, loopback and link-local addresses refused unless
 * allowed — a host name is resolved and every address checked, and the socket may only connect to
 * a checked one, so DNS cannot swap it), connect and response timeouts per request on fresh and
 * reused keep-alive sockets alike, optional HMAC-SHA256 signature, trace context and delivery id
 * injected by the caller. Never throws: the outcome says what happened without the URL.
 */
import { createHmac } from "node:crypto"
import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions } from "node:dns"
import { Agent as HttpAgent, request as httpRequest, type ClientRequest } from "node:http"
import { Agent as HttpsAgent, request as httpsRequest } from "node:https"
import { BlockList, isIP, type LookupFunction, type Socket } from "node:net"

export interface WebhookSettings {
  /** HMAC-SHA256 key for `X-CodeQ-Signature`; unsigned when undefined. */
  readonly hmacSecret: string | undefined
  /** Attempts before giving up (codeQ: 5). */
  readonly maxAttempts: number
  readonly baseDelaySeconds: number
  readonly maxDelaySeconds: number
  readonly connectTimeoutMs: number
  readonly responseTimeoutMs: number
  /** Allow private, loopback and link-local destinations (tests, trusted networks). */
  readonly allowPrivateNetworks: boolean
}

export const DEFAULT_WEBHOOK_SETTINGS: WebhookSettings = {
  hmacSecret: undefined,
  maxAttempts: 5,
  baseDelaySeconds: 2,
  maxDelaySeconds: 60,
  connectTimeoutMs: 5_000,
  responseTimeoutMs: 10_000,
  allowPrivateNetworks: false
}

export type DeliveryOutcome =
  | { readonly delivered: true; readonly statusCode: number }
  | { readonly delivered: false; readonly statusCode?: number; readonly error: "status" | "timeout" | "refused" | "dns" | "blocked_destination" | "network"; readonly permanent: boolean }

const blocked = new BlockList()
// 192.0.0.0/24: IETF protocol assignments; 198.18.0.0/15: benchmarking (RFC 6890).
for (const [net, prefix] of [["0.0.0.0", 8], ["10.0.0.0", 8], ["100.64.0.0", 10], ["127.0.0.0", 8], ["169.254.0.0", 16], ["172.16.0.0", 12], ["192.0.0.0", 24], ["192.168.0.0", 16], ["198.18.0.0", 15], ["224.0.0.0", 4], ["240.0.0.0", 4]] as const)
  blocked.addSubnet(net, prefix, "ipv4")
// fec0::/10: deprecated site-local (still routed inside some networks); 64:ff9b:1::/48: local-use
// NAT64 (RFC 8215), whose translation is the local network's choice; 100::/64: discard-only.
for (const [net, prefix] of [["::", 128], ["::1", 128], ["fc00::", 7], ["fe80::", 10], ["fec0::", 10], ["ff00::", 8], ["64:ff9b:1::", 48], ["100::", 64]] as const) blocked.addSubnet(net, prefix, "ipv6")

/** The eight 16-bit groups of a valid IPv6 address (a trailing dotted quad becomes two groups). */
const ipv6Groups = (address: string): ReadonlyArray<number> => {
  const text = address.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_, a: string, b: string, c: string, d: string) =>
    `${((Number(a) << 8) | Number(b)).toString(16)}:${((Number(c) << 8) | Number(d)).toString(16)}`
  )
  const [head = "", tail] = text.split("::")
  const parse = (part: string) => (part === "" ? [] : part.split(":").map((group) => parseInt(group, 16)))
  const before = parse(head)
  const after = tail === undefined ? [] : parse(tail)
  return [...before, ...Array<number>(8 - before.length - after.length).fill(0), ...after]
}

const ipv4Of = (high: number, low: number): string => `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`

/**
 * The IPv4 address an IPv6 address stands for, where a gateway would take the connection to it:
 * NAT64 (64:ff9b::/96), IPv4-compatible (::/96, deprecated but still parsed) and 6to4
 * (2002::/16). IPv4-mapped (::ffff:0:0/96) is checked by the block list itself.
 */
const embeddedIpv4 = (address: string): string | undefined => {
  const g = ipv6Groups(address)
  const zeros = (from: number, to: number) => g.slice(from, to).every((group) => group === 0)
  if (g[0] === 0x64 && g[1] === 0xff9b && zeros(2, 6)) return ipv4Of(g[6] ?? 0, g[7] ?? 0)
  if (zeros(0, 6)) return ipv4Of(g[6] ?? 0, g[7] ?? 0)
  if (g[0] === 0x2002) return ipv4Of(g[1] ?? 0, g[2] ?? 0)
  return undefined
}

/** True for addresses a webhook must not reach by default. */
export const isPrivateAddress = (address: string): boolean => {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1]
  if (mapped !== undefined) return blocked.check(mapped, "ipv4")
  const family = isIP(address)
  if (family === 4) return blocked.check(address, "ipv4")
  if (family !== 6) return true
  if (blocked.check(address, "ipv6")) return true
  const embedded = embeddedIpv4(address)
  return embedded !== undefined && blocked.check(embedded, "ipv4")
}

/** The guard refused every address of the destination; permanent. */
export class BlockedDestination extends Error {
  constructor() {
    super("blocked destination")
    this.name = "BlockedDestination"
  }
}

/** Resolves every address of a host name (the shape of `dns.lookup` with `all: true`). */
export type Resolver = (hostname: string, options: LookupAllOptions, callback: (error: NodeJS.ErrnoException | null, addresses: Array<LookupAddress>) => void) => void

const systemResolver: Resolver = (hostname, options, callback) => dnsLookup(hostname, options, callback)

/**
 * A DNS lookup for the socket itself: resolves every address of the host, drops those the guard
 * refuses and answers only with checked ones, so the connection cannot reach a refused address.
 * Answers in the shape asked for — Node 20's `autoSelectFamily` asks with `all: true` for a list
 * to race; a plain connect asks for one address.
 */
export const guardedLookup =
  (allowPrivate: boolean, resolve: Resolver = systemResolver): LookupFunction =>
  (hostname, options, callback) => {
    const fail = (error: NodeJS.ErrnoException) => (options.all === true ? callback(error, []) : callback(error, "", 0))
    resolve(hostname, { ...options, all: true }, (error, addresses) => {
      if (error !== null) return fail(error)
      if (addresses.length === 0) return fail(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND", hostname }))
      const checked = allowPrivate ? addresses : addresses.filter((a) => !isPrivateAddress(a.address))
      const first = checked[0]
      if (first === undefined) return fail(new BlockedDestination())
      if (options.all === true) callback(null, checked)
      else callback(null, first.address, first.family)
    })
  }

/**
 * Keep-alive pools, one per protocol and guard setting, each connecting through its own guard.
 * WHY: a pooled socket was connected under the guard of the pool it sits in; with one shared pool
 * a request that forbids private networks could reuse a socket opened to a private address by a
 * request that allowed them. An idle socket is dropped after a few seconds, before common
 * receivers (Node's default is 5 s) close it under a request.
 */
const IDLE_SOCKET_MS = 4_000
const agents = {
  "http:": { open: new HttpAgent({ keepAlive: true, timeout: IDLE_SOCKET_MS, lookup: guardedLookup(true) }), guarded: new HttpAgent({ keepAlive: true, timeout: IDLE_SOCKET_MS, lookup: guardedLookup(false) }) },
  "https:": { open: new HttpsAgent({ keepAlive: true, timeout: IDLE_SOCKET_MS, lookup: guardedLookup(true) }), guarded: new HttpsAgent({ keepAlive: true, timeout: IDLE_SOCKET_MS, lookup: guardedLookup(false) }) }
} as const

/** Header naming one delivery, for receivers to deduplicate by: the same on every retry of it. */
export const DELIVERY_ID_HEADER = "X-CodeQ-Delivery-Id"

/**
 * `<taskId>:<sequence of the terminal event delivered>` — read from the log, so stable across
 * retries and broker restarts; a requeued task that ends again is a new delivery with a new id.
 */
export const deliveryId = (taskId: string, terminalEventSeq: number): string => `${taskId}:${terminalEventSeq}`

/** `X-CodeQ-Timestamp` and `X-CodeQ-Signature` (hex HMAC-SHA256 over "<unix_ts>.<body>"). */
export const signature = (secret: string, unixSeconds: number, body: string): string =>
  createHmac("sha256", secret).update(`${unixSeconds}.${body}`).digest("hex")

export const deliverWebhook = (url: string, body: string, extraHeaders: Record<string, string>, settings: WebhookSettings): Promise<DeliveryOutcome> =>
  new Promise((resolve) => {
    let target: URL
    try {
      target = new URL(url)
    } catch {
      return resolve({ delivered: false, error: "dns", permanent: true })
    }
    if (target.protocol !== "http:" && target.protocol !== "https:") return resolve({ delivered: false, error: "dns", permanent: true })
    const literal = target.hostname.replace(/^\[|\]$/g, "")
    if (isIP(literal) !== 0 && !settings.allowPrivateNetworks && isPrivateAddress(literal))
      return resolve({ delivered: false, error: "blocked_destination", permanent: true })
    const headers: Record<string, string> = { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)), ...extraHeaders }
    if (settings.hmacSecret !== undefined && settings.hmacSecret !== "") {
      const ts = Math.floor(Date.now() / 1000)
      headers["X-CodeQ-Timestamp"] = String(ts)
      headers["X-CodeQ-Signature"] = signature(settings.hmacSecret, ts, body)
    }
    const pool = agents[target.protocol]
    const agent = settings.allowPrivateNetworks ? pool.open : pool.guarded
    const send = target.protocol === "https:" ? httpsRequest : httpRequest

    // Everything this request adds to a socket it may share with later requests is undone in
    // `finish`, whatever the outcome: a keep-alive socket outlives the request.
    let settled = false
    let req: ClientRequest | undefined
    let socket: Socket | undefined
    let connectTimer: NodeJS.Timeout | undefined
    const onConnect = () => clearTimeout(connectTimer)
    const finish = (outcome: DeliveryOutcome) => {
      if (settled) return
      settled = true
      clearTimeout(deadline)
      clearTimeout(connectTimer)
      socket?.removeListener("connect", onConnect)
      resolve(outcome)
    }
    const timedOut = () => {
      finish({ delivered: false, error: "timeout", permanent: false })
      req?.destroy()
    }

    try {
      req = send(target, { method: "POST", headers, agent, timeout: settings.responseTimeoutMs }, (res) => {
        res.resume()
        res.on("end", () => {
          const status = res.statusCode ?? 0
          finish(status >= 200 && status < 300 ? { delivered: true, statusCode: status } : { delivered: false, statusCode: status, error: "status", permanent: false })
        })
        res.on("error", () => finish({ delivered: false, error: "network", permanent: false }))
      })
    } catch {
      // Node refuses the request before sending (e.g. a header value it cannot write); no timer yet.
      return resolve({ delivered: false, error: "network", permanent: true })
    }
    const deadline = setTimeout(timedOut, settings.connectTimeoutMs + settings.responseTimeoutMs)
    req.once("socket", (assigned: Socket) => {
      // A reused keep-alive socket is already connected: only a connecting one gets a connect timer.
      if (settled || !assigned.connecting) return
      socket = assigned
      connectTimer = setTimeout(timedOut, settings.connectTimeoutMs)
      assigned.once("connect", onConnect)
    })
    req.on("timeout", timedOut)
    req.on("error", (error: NodeJS.ErrnoException) => {
      if (error instanceof BlockedDestination) return finish({ delivered: false, error: "blocked_destination", permanent: true })
      if (error.code === "ENOTFOUND" || error.code === "EAI_AGAIN") return finish({ delivered: false, error: "dns", permanent: false })
      finish({ delivered: false, error: error.code === "ECONNREFUSED" ? "refused" : "network", permanent: false })
    })
    req.end(body)
  })

/** Delay before attempt `attempt + 1` (codeQ: base·2^(attempt−1), capped). */
export const webhookBackoffSeconds = (settings: WebhookSettings, attempt: number): number =>
  Math.min(settings.maxDelaySeconds, settings.baseDelaySeconds * 2 ** Math.max(0, attempt - 1))
