/**
 * One burst of publishes written as NATS protocol frames into one buffer, handed to the
 * connection as a single command.
 *
 * WHY: nats.js's `publish` builds each message's protocol line as a string, encodes it with a
 * TextEncoder (a new ArrayBuffer per call), asks the headers for their bytes, queues the line, the
 * headers, the body and a CRLF as four pieces, and copies them all into one zero-filled array when
 * it flushes. Written as frames here, a publish of a worker's append costs the client ~0.7× the
 * CPU, socket write and header building included (`npm run bench -- publish`: 5.9 → 4.1 µs, lower
 * in 5 of 5 alternated rounds). Every process of a task publishes several times.
 *
 * The frames are the ones nats.js writes (`PUB`/`HPUB`, the header block's length, the total, a
 * CRLF after the body), and the checks are its own, in its order, with its errors: a closed or
 * draining connection, an empty subject, headers to a server without them, a message over the
 * server's `max_payload`. A message that fails them is reported to its caller and left out; the
 * others go. The connection's counters (`stats()`) count what is sent.
 *
 * This reaches one internal of nats.js, its protocol handler's `sendCommand`, which every
 * `publish` ends in. `wireOf` checks its shape at run time: where it is missing, the outbox
 * publishes message by message through `publish` as before (and a test fails on the version we
 * pin, so an upgrade that moves it is noticed).
 */
import { ErrorCode, NatsError, type MsgHdrs, type NatsConnection, type PublishOptions } from "nats"
import { WireHeaders } from "./wireHeaders.js"

/** One message of a burst: what `publish` would be given. */
export interface Publication {
  readonly subject: string
  readonly data: Uint8Array
  readonly options: PublishOptions | undefined
}

/** What the frames need of nats.js's protocol handler. */
export interface WireProtocol {
  sendCommand(command: Uint8Array): void
  readonly info?: { readonly headers?: boolean; readonly max_payload?: number } | undefined
  readonly noMorePublishing?: boolean
  outMsgs: number
  outBytes: number
}

const isWireProtocol = (value: unknown): value is WireProtocol => {
  const p = value as Partial<Record<keyof WireProtocol, unknown>> | null | undefined
  return typeof p === "object" && p !== null && typeof p.sendCommand === "function" && typeof p.outMsgs === "number" && typeof p.outBytes === "number"
}

/** The connection's protocol handler, when it has the shape frames need; undefined otherwise. */
export const wireOf = (nc: NatsConnection): WireProtocol | undefined => {
  const protocol = (nc as unknown as { readonly protocol?: unknown }).protocol
  return isWireProtocol(protocol) ? protocol : undefined
}

const CRLF = 0x0d0a
/** Bytes of frames handed to the connection at once at most (a larger message goes alone). */
export const MAX_FRAME_BYTES = 1 << 20

/** A message checked and measured, ready to be written. */
interface Planned {
  readonly index: number
  readonly line: string
  readonly lineBytes: number
  readonly block: string | Uint8Array | undefined
  readonly blockBytes: number
  readonly data: Uint8Array
  /** Bytes of its frame: line, header block, body, CRLF. */
  readonly bytes: number
}

/** nats.js's own headers (`MsgHdrsImpl`) give their bytes as `encode()`, which its `publish` calls. */
const headerBlock = (headers: MsgHdrs): string | Uint8Array =>
  headers instanceof WireHeaders ? headers.toString() : (headers as MsgHdrs & { encode(): Uint8Array }).encode()

/**
 * Writes `messages` as one command on `protocol`. Returns, by index, the error of each message
 * that was left out (an empty map when all went), as nats.js's `publish` would have thrown it.
 */
export const sendFrames = (nc: NatsConnection, protocol: WireProtocol, messages: ReadonlyArray<Publication>): Map<number, unknown> => {
  const refused = new Map<number, unknown>()
  const closed = nc.isClosed()
  if (closed || protocol.noMorePublishing === true) {
    const error = NatsError.errorForCode(closed ? ErrorCode.ConnectionClosed : ErrorCode.ConnectionDraining)
    messages.forEach((_, i) => refused.set(i, error))
    return refused
  }
  const info = protocol.info
  const planned: Array<Planned> = []
  messages.forEach(({ subject, data, options }, index) => {
    const headers = options?.headers
    if (subject.length === 0) return void refused.set(index, NatsError.errorForCode(ErrorCode.BadSubject))
    if (headers !== undefined && info !== undefined && info.headers !== true)
      return void refused.set(index, new NatsError("headers", ErrorCode.ServerOptionNotAvailable))
    const block = headers === undefined ? undefined : headerBlock(headers)
    const blockBytes = block === undefined ? 0 : typeof block === "string" ? Buffer.byteLength(block) : block.length
    const total = data.length + blockBytes
    if (info?.max_payload !== undefined && total > info.max_payload) return void refused.set(index, NatsError.errorForCode(ErrorCode.MaxPayloadExceeded))
    const reply = options?.reply === undefined || options.reply === "" ? "" : ` ${options.reply}`
    const line = block === undefined ? `PUB ${subject}${reply} ${total}\r\n` : `HPUB ${subject}${reply} ${blockBytes} ${total}\r\n`
    const lineBytes = Buffer.byteLength(line)
    planned.push({ index, line, lineBytes, block, blockBytes, data, bytes: lineBytes + total + 2 })
  })
  let from = 0
  while (from < planned.length) {
    // A frame holds up to MAX_FRAME_BYTES (a larger message alone): a flush of large documents
    // is never one allocation of its whole size.
    let to = from
    let size = 0
    while (to < planned.length && (to === from || size + (planned[to] as Planned).bytes <= MAX_FRAME_BYTES)) size += (planned[to++] as Planned).bytes
    try {
      send(protocol, planned, from, to, size)
    } catch (error) {
      // Not sent, nor anything after it: the connection's own error, as `publish` would throw it.
      for (const p of planned.slice(from)) refused.set(p.index, error)
      return refused
    }
    from = to
  }
  return refused
}

/** Writes `planned[from, to)` (`size` bytes of frames) into one buffer and hands it to the connection. */
const send = (protocol: WireProtocol, planned: ReadonlyArray<Planned>, from: number, to: number, size: number): void => {
  const frame = Buffer.allocUnsafe(size)
  let at = 0
  let payload = 0
  for (let i = from; i < to; i++) {
    const p = planned[i] as Planned
    at += frame.write(p.line, at, p.lineBytes, "utf8")
    if (typeof p.block === "string") at += frame.write(p.block, at, p.blockBytes, "utf8")
    else if (p.block !== undefined) {
      frame.set(p.block, at)
      at += p.blockBytes
    }
    frame.set(p.data, at)
    at += p.data.length
    frame.writeUInt16BE(CRLF, at)
    at += 2
    payload += p.data.length + p.blockBytes
  }
  protocol.sendCommand(frame)
  protocol.outMsgs += to - from
  protocol.outBytes += payload
}
