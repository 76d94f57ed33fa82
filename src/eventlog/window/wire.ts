/**
 * The fast path of replay's reader: a pull consumer read over a plain TCP connection of its own,
 * speaking the few lines of the NATS client protocol a reader needs (CONNECT, SUB, PUB of pull
 * requests, HMSG, PING/PONG).
 *
 * Why not nats.js: measured on this machine, its protocol parser and header objects cost ~13 µs a
 * message — a ceiling near 75,000 events/s, while the server delivers over 250,000. Here a chunk
 * of the socket is cut into messages with `indexOf` and each header block is read in one pass
 * (~1.5 µs a message). Everything else — consumer creation, direct gets, TLS and credential
 * handling — stays with nats.js: when the server asks for TLS or for credentials other than a
 * user/password or token in the URL, `WireSource.open` refuses with `WireUnsupported` and replay
 * reads through nats.js instead, slower but the same records.
 */
import { connect as tcpConnect, type Socket } from "node:net"
import { randomBytes } from "node:crypto"
import type { LogRecord } from "./records.js"
import { statusCodeOf } from "../rawHeaders.js"
import type { BodyPolicy, HeaderPolicy } from "./records.js"
import { latin1, lengthOfFirst, parseAckInto, recordFromWire } from "./wireRecord.js"

/** Where and as whom to connect: a server of the cluster, with the URL's user/password or token. */
export interface WireTarget {
  readonly host: string
  readonly port: number
  readonly user?: string
  readonly pass?: string
  readonly token?: string
}

/** The server needs something this reader does not speak (TLS, nkeys, JWT): use nats.js. */
export class WireUnsupported extends Error {}

/** A reader of the log: records in log order, and how many are still pending after the last. */
export interface LogSource {
  /** Every record received (at least one), waiting up to `waitMs`; none when the wait ends. */
  next(waitMs: number): Promise<ReadonlyArray<LogRecord>>
  /** Messages still pending for the consumer after the last record handed out; undefined before any. */
  readonly pending: number | undefined
  close(): Promise<void>
}

export interface PullSpec {
  readonly stream: string
  readonly consumer: string
  /** Messages per pull request. */
  readonly batch: number
  readonly bodies: BodyPolicy
  /** What of the headers the records carry. */
  readonly headers: HeaderPolicy
}

const CR = 0x0d
const EXPIRES_NS = 5_000_000_000

/** Numbers kept per received message: where its headers, body, subject and reply lie in its buffer. */
const SLOTS = 7
/** Records made and handed out per `next`, at most: made just before they are used, they die young. */
const HANDOUT = 2_048

export class WireSource implements LogSource {
  /**
   * Messages received and not yet handed out, as the bytes they arrived in and positions in them:
   * a record is made only when it is handed out. Records queued as objects (tens of thousands at
   * a time) outlived the young generation and made every scavenge copy them: most of the reader's
   * GC time.
   */
  private readonly rawBuffers: Array<Buffer> = []
  private rawPositions = new Int32Array(SLOTS * 4_096)
  private rawHead = 0
  /** The ack subject of the message being handed out, parsed into the same object each time. */
  private readonly ack = { seq: 0, timeNs: "", pending: 0 }
  private carry: Buffer | undefined
  /**
   * Messages still to come for each open pull request, oldest first: the server serves a
   * consumer's requests in order, so a message counts against the first, and a status (expired,
   * no messages) ends it. Two are kept open, the next sent once the first is half delivered, so the
   * server never waits for this reader to ask again between batches.
   */
  private readonly requests: Array<number> = []
  private requestedAt = 0
  private failure: Error | undefined
  private wake: (() => void) | undefined
  private lastPending: number | undefined
  private readonly inbox = `_INBOX.codeq_replay_${randomBytes(8).toString("hex")}`

  private constructor(
    private readonly socket: Socket,
    private readonly spec: PullSpec
  ) {}

  /** Connects and subscribes; rejects with WireUnsupported when the server needs TLS or other auth. */
  static open(target: WireTarget, spec: PullSpec, timeoutMs = 5_000): Promise<WireSource> {
    return new Promise((resolve, reject) => {
      const socket = tcpConnect({ host: target.host, port: target.port })
      socket.setNoDelay(true)
      const source = new WireSource(socket, spec)
      let greeted = false
      let settled = false
      const timer = setTimeout(() => fail(new WireUnsupported(`no handshake with ${target.host}:${target.port} within ${timeoutMs} ms`)), timeoutMs)
      const fail = (error: Error) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        socket.destroy()
        reject(error)
      }
      socket.once("error", fail)
      const handshake = (chunk: Buffer) => {
        const text = chunk.toString("latin1")
        if (!greeted) {
          if (!text.startsWith("INFO ")) return fail(new WireUnsupported("the server did not greet with INFO"))
          greeted = true
          const info = JSON.parse(text.slice(5, text.indexOf("\r\n"))) as { tls_required?: boolean; auth_required?: boolean; nonce?: string }
          if (info.tls_required === true) return fail(new WireUnsupported("the server requires TLS"))
          const hasCreds = target.token !== undefined || target.user !== undefined
          if (info.auth_required === true && !hasCreds) return fail(new WireUnsupported("the server requires credentials this reader does not have"))
          const connectOptions = {
            verbose: false,
            pedantic: false,
            headers: true,
            no_responders: true,
            protocol: 1,
            lang: "codeq-replay",
            version: "1",
            ...(target.user !== undefined ? { user: target.user, pass: target.pass ?? "" } : {}),
            ...(target.token !== undefined ? { auth_token: target.token } : {})
          }
          socket.write(`CONNECT ${JSON.stringify(connectOptions)}\r\nPING\r\n`)
          return
        }
        if (text.startsWith("-ERR")) return fail(new WireUnsupported(`the server refused the connection: ${text.trim()}`))
        if (!text.includes("PONG")) return
        settled = true
        clearTimeout(timer)
        socket.off("data", handshake)
        socket.off("error", fail)
        socket.on("data", (data: Buffer) => source.onData(data))
        socket.on("error", (error) => source.fail(error))
        socket.on("close", () => source.fail(new Error("the connection to the server closed")))
        socket.write(`SUB ${source.inbox} 1\r\n`)
        resolve(source)
      }
      socket.on("data", handshake)
    })
  }

  get pending(): number | undefined {
    return this.lastPending
  }

  async next(waitMs: number): Promise<ReadonlyArray<LogRecord>> {
    const deadline = Date.now() + waitMs
    for (;;) {
      if (this.failure !== undefined) throw this.failure
      this.refill()
      if (this.queued > 0) {
        const out = this.handOut(HANDOUT)
        this.refill()
        if (out.length > 0) return out
        continue
      }
      const left = deadline - Date.now()
      if (left <= 0) return []
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => this.signal(), left)
        this.wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
  }

  async close(): Promise<void> {
    this.failure ??= new Error("closed")
    this.socket.removeAllListeners("close")
    this.socket.end()
    this.socket.destroy()
    this.signal()
  }

  private fail(error: Error): void {
    this.failure ??= error
    this.signal()
  }

  private signal(): void {
    const wake = this.wake
    this.wake = undefined
    wake?.()
  }

  /** Messages received and not handed out yet. */
  private get queued(): number {
    return this.rawBuffers.length - this.rawHead
  }

  /** Makes the records of up to `max` queued messages, in order, and drops them from the queue. */
  private handOut(max: number): Array<LogRecord> {
    const n = Math.min(max, this.queued)
    const out: Array<LogRecord> = []
    for (let k = 0; k < n; k++) {
      const i = this.rawHead + k
      const b = this.rawBuffers[i] as Buffer
      const p = i * SLOTS
      const pos = this.rawPositions
      const ack = this.ack
      // A reply that is not an ack subject: not a message of the consumer's (nothing to read).
      if (!parseAckInto(b, pos[p + 5] ?? 0, pos[p + 6] ?? 0, ack)) continue
      const subject = latin1(b, pos[p + 3] ?? 0, pos[p + 4] ?? 0)
      out.push(recordFromWire(b, pos[p] ?? 0, pos[p + 1] ?? 0, pos[p + 2] ?? 0, ack.seq, subject, ack.timeNs, this.spec.bodies, this.spec.headers))
      this.lastPending = ack.pending
    }
    this.rawHead += n
    if (this.rawHead === this.rawBuffers.length) {
      this.rawBuffers.length = 0
      this.rawHead = 0
    } else if (this.rawHead >= 8_192) {
      // Moved down in place: splice would return what it removes, a garbage array each time.
      const left = this.rawBuffers.length - this.rawHead
      this.rawBuffers.copyWithin(0, this.rawHead)
      this.rawBuffers.length = left
      this.rawPositions.copyWithin(0, this.rawHead * SLOTS, (this.rawHead + left) * SLOTS)
      this.rawHead = 0
    }
    return out
  }

  private refill(): void {
    if (this.failure !== undefined) return
    // A request the server never ended (it restarted, the status was lost) is given up on.
    if (this.requests.length > 0 && Date.now() - this.requestedAt > EXPIRES_NS / 1e6 + 5_000) this.requests.length = 0
    const coming = this.requests.reduce((sum, remaining) => sum + remaining, 0)
    // At most two requests open, and no more asked for while a batch's worth waits unread.
    if (this.requests.length >= 2 || coming > this.spec.batch / 2 || this.queued > this.spec.batch) return
    this.requests.push(this.spec.batch)
    this.requestedAt = Date.now()
    const body = `{"batch":${this.spec.batch},"expires":${EXPIRES_NS}}`
    this.socket.write(`PUB $JS.API.CONSUMER.MSG.NEXT.${this.spec.stream}.${this.spec.consumer} ${this.inbox} ${body.length}\r\n${body}\r\n`)
  }

  /** Cuts a chunk into protocol lines and messages; a partial message waits for the next chunk. */
  private onData(chunk: Buffer): void {
    const before = this.queued
    let b = chunk
    let i = 0
    if (this.carry !== undefined) {
      // A message cut at the end of the last chunk: complete it with as few bytes of this one as
      // it needs, rather than copying the whole chunk behind it (64 KiB, a copy per read).
      const carry = this.carry
      this.carry = undefined
      const need = lengthOfFirst(carry)
      if (need < 0 || carry.length + chunk.length < need) b = Buffer.concat([carry, chunk])
      else {
        const head = Buffer.concat([carry, chunk.subarray(0, need - carry.length)])
        this.parse(head, 0)
        i = need - carry.length
      }
    }
    const end = this.parse(b, i)
    if (end < b.length) this.carry = b.subarray(end)
    this.refill()
    if (this.queued > before || this.failure !== undefined) this.signal()
  }

  /** Handles every complete line and message of b from `i`; returns where the unparsed rest starts. */
  private parse(b: Buffer, i: number): number {
    while (i < b.length) {
      const eol = b.indexOf(CR, i)
      if (eol < 0 || eol + 1 >= b.length) break
      const op = b[i]
      if (op === 0x48 /* HMSG */ || op === 0x4d /* MSG */) {
        const next = this.onMessageLine(b, i + (op === 0x48 ? 5 : 4), eol, op === 0x48)
        if (next < 0) break
        i = next
        continue
      }
      const line = b.toString("latin1", i, eol)
      if (line === "PING") this.socket.write("PONG\r\n")
      else if (line.startsWith("-ERR")) this.fail(new Error(`the server said ${line}`))
      i = eol + 2
    }
    return i
  }

  /**
   * `[H]MSG <subject> <sid> [reply] [<header bytes>] <total bytes>` at [from, eol): handles the
   * message and returns where the next line starts, or -1 when the message is not all here yet.
   * Read from the bytes, not split into strings: this runs once per event.
   */
  private onMessageLine(b: Buffer, from: number, eol: number, headered: boolean): number {
    let k = eol - 1
    let total = 0
    for (let m = 1; b[k] !== 32; k--, m *= 10) total += ((b[k] ?? 48) - 48) * m
    let headerLength = 0
    if (headered) {
      k--
      for (let m = 1; b[k] !== 32; k--, m *= 10) headerLength += ((b[k] ?? 48) - 48) * m
    }
    const start = eol + 2
    if (start + total + 2 > b.length) return -1
    const subjectEnd = b.indexOf(32, from)
    const sidEnd = b.indexOf(32, subjectEnd + 1)
    // A reply (the ack subject, `$JS.ACK.…`) sits between the sid and the sizes; statuses have none.
    const message = sidEnd > 0 && sidEnd < k && b[sidEnd + 1] === 0x24
    if (!message) {
      // A status: 404 no messages, 408 request expired, 409 limits or leadership end the request;
      // 503 means nobody answers for the consumer (deleted, or its stream is gone).
      const header = headerLength > 0 ? b.toString("latin1", start, start + headerLength) : "NATS/1.0\r\n\r\n"
      if (statusCodeOf(header) === 503) this.fail(new Error(`consumer ${this.spec.consumer} on ${this.spec.stream} does not answer (503)`))
      this.requests.shift()
      this.signal()
    } else {
      const at = this.rawBuffers.length * SLOTS
      if (at + SLOTS > this.rawPositions.length) {
        const grown = new Int32Array(this.rawPositions.length * 2)
        grown.set(this.rawPositions)
        this.rawPositions = grown
      }
      const pos = this.rawPositions
      pos[at] = start
      pos[at + 1] = start + headerLength
      pos[at + 2] = start + total
      pos[at + 3] = from
      pos[at + 4] = subjectEnd
      pos[at + 5] = sidEnd + 1
      pos[at + 6] = k
      this.rawBuffers.push(b)
      const remaining = (this.requests[0] ?? 1) - 1
      if (remaining > 0) this.requests[0] = remaining
      else this.requests.shift()
    }
    return start + total + 2
  }
}
