/**
 * One webhook POST: destination checks (private, loopback and link-local addresses refused unless
 * allowed — checked on the address actually connected to, so DNS cannot swap it), connect and
 * response timeouts, optional HMAC-SHA256 signature, trace context injected. Never throws: the
 * outcome says what happened without the URL.
 */
import { createHmac } from "node:crypto"
import { lookup as dnsLookup } from "node:dns"
import { request as httpRequest } from "node:http"
import { request as httpsRequest } from "node:https"
import { BlockList, isIP, type LookupFunction } from "node:net"

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
for (const [net, prefix] of [["0.0.0.0", 8], ["10.0.0.0", 8], ["100.64.0.0", 10], ["127.0.0.0", 8], ["169.254.0.0", 16], ["172.16.0.0", 12], ["192.168.0.0", 16], ["224.0.0.0", 4], ["240.0.0.0", 4]] as const)
  blocked.addSubnet(net, prefix, "ipv4")
for (const [net, prefix] of [["::", 128], ["::1", 128], ["fc00::", 7], ["fe80::", 10], ["ff00::", 8]] as const) blocked.addSubnet(net, prefix, "ipv6")

/** True for addresses a webhook must not reach by default. */
export const isPrivateAddress = (address: string): boolean => {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1]
  if (mapped !== undefined) return blocked.check(mapped, "ipv4")
  const family = isIP(address)
  return family === 4 ? blocked.check(address, "ipv4") : family === 6 ? blocked.check(address, "ipv6") : true
}

class BlockedDestination extends Error {}

/** A DNS lookup that refuses private addresses, so the check holds for the socket itself. */
const guardedLookup =
  (allowPrivate: boolean): LookupFunction =>
  (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: false }, (error, address, family) => {
      if (error !== null) return callback(error, "", 0)
      if (!allowPrivate && isPrivateAddress(String(address))) return callback(new BlockedDestination("blocked destination"), "", 0)
      callback(null, String(address), family)
    })
  }

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
    const literal = target.hostname.replace(/^\[|\]$/g, "")
    if (isIP(literal) !== 0 && !settings.allowPrivateNetworks && isPrivateAddress(literal))
      return resolve({ delivered: false, error: "blocked_destination", permanent: true })
    const headers: Record<string, string> = { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)), ...extraHeaders }
    if (settings.hmacSecret !== undefined && settings.hmacSecret !== "") {
      const ts = Math.floor(Date.now() / 1000)
      headers["X-CodeQ-Timestamp"] = String(ts)
      headers["X-CodeQ-Signature"] = signature(settings.hmacSecret, ts, body)
    }
    const send = target.protocol === "https:" ? httpsRequest : httpRequest
    let settled = false
    const finish = (outcome: DeliveryOutcome) => {
      if (settled) return
      settled = true
      clearTimeout(connectTimer)
      resolve(outcome)
    }
    const req = send(target, { method: "POST", headers, lookup: guardedLookup(settings.allowPrivateNetworks), timeout: settings.responseTimeoutMs }, (res) => {
      res.resume()
      res.on("end", () => {
        const status = res.statusCode ?? 0
        finish(status >= 200 && status < 300 ? { delivered: true, statusCode: status } : { delivered: false, statusCode: status, error: "status", permanent: false })
      })
      res.on("error", () => finish({ delivered: false, error: "network", permanent: false }))
    })
    const connectTimer = setTimeout(() => {
      finish({ delivered: false, error: "timeout", permanent: false })
      req.destroy()
    }, settings.connectTimeoutMs + settings.responseTimeoutMs)
    req.on("socket", (socket) => {
      const onConnectTimeout = setTimeout(() => {
        finish({ delivered: false, error: "timeout", permanent: false })
        req.destroy()
      }, settings.connectTimeoutMs)
      socket.once("connect", () => clearTimeout(onConnectTimeout))
      socket.once("close", () => clearTimeout(onConnectTimeout))
    })
    req.on("timeout", () => {
      finish({ delivered: false, error: "timeout", permanent: false })
      req.destroy()
    })
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
