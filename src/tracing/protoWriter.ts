/**
 * A protobuf writer over one growable buffer, for the OTLP encoder (otlpMessages.ts, otlpEncode.ts): varints,
 * fixed-width numbers, strings (short ASCII ones written here, repeated ones copied from their
 * first encoding), hex ids, and nested messages whose length is written after their content.
 */
import type { HrTime } from "@opentelemetry/api"

// Wire types.
export const VARINT = 0
export const FIXED64 = 1
export const LEN = 2
export const FIXED32 = 5

const TWO_32 = 4_294_967_296

/** The value of each hex digit by character code; 0 for anything else. */
const HEX = new Uint8Array(128)
for (let i = 0; i < 10; i++) HEX[48 + i] = i
for (let i = 0; i < 6; i++) HEX[65 + i] = HEX[97 + i] = 10 + i

const INITIAL_BYTES = 1 << 20
/** Past this a buffer is not kept for the next request: one huge batch should not pin its memory. */
const KEEP_AT_MOST_BYTES = 16 << 20
/** Strings encoded once and copied: attribute keys, span, event and scope names. */
const CACHE_LIMIT = 2_048
const CACHE_MAX_LENGTH = 128
/** Each string's length-prefixed encoding, shared by every writer (spans are encoded into many: otlpEncode.ts). */
const cache = new Map<string, Buffer>()

/** How many bytes `value` (below 2³²) takes as a varint. */
export const varintSize = (value: number): number => {
  let size = 1
  for (let v = value >>> 7; v > 0; v >>>= 7) size++
  return size
}

/** Writes `value` (below 2³²) as a varint at `at`; returns the offset after it. */
export const putVarint = (buf: Uint8Array, at: number, value: number): number => {
  let v = value
  let i = at
  while (v > 0x7f) {
    buf[i++] = (v & 0x7f) | 0x80
    v >>>= 7
  }
  buf[i++] = v
  return i
}

export class Writer {
  buf: Buffer
  pos = 0

  constructor(private readonly initialBytes = INITIAL_BYTES) {
    this.buf = Buffer.allocUnsafe(initialBytes)
  }

  reset(): void {
    if (this.buf.length > KEEP_AT_MOST_BYTES) this.buf = Buffer.allocUnsafe(this.initialBytes)
    this.pos = 0
  }

  ensure(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.pos + bytes) size *= 2
    const bigger = Buffer.allocUnsafe(size)
    this.buf.copy(bigger, 0, 0, this.pos)
    this.buf = bigger
  }

  /** A non-negative integer up to 2⁶³ (exact up to 2⁵³). */
  varint(value: number): void {
    this.ensure(10)
    if (value < TWO_32) {
      this.pos = putVarint(this.buf, this.pos, value)
      return
    }
    let v = value
    while (v > 0x7f) {
      this.buf[this.pos++] = (v % 128) | 0x80
      v = Math.floor(v / 128)
    }
    this.buf[this.pos++] = v
  }

  tag(field: number, wire: number): void {
    this.varint(field * 8 + wire)
  }

  /** A negative int64: ten bytes of two's complement. */
  negative(value: number): void {
    let v = BigInt.asUintN(64, BigInt(value))
    this.ensure(10)
    while (v > 0x7fn) {
      this.buf[this.pos++] = Number(v & 0x7fn) | 0x80
      v >>= 7n
    }
    this.buf[this.pos++] = Number(v)
  }

  fixed32(value: number): void {
    this.ensure(4)
    const buf = this.buf
    buf[this.pos++] = value & 0xff
    buf[this.pos++] = (value >>> 8) & 0xff
    buf[this.pos++] = (value >>> 16) & 0xff
    buf[this.pos++] = (value >>> 24) & 0xff
  }

  double(value: number): void {
    this.ensure(8)
    this.buf.writeDoubleLE(value, this.pos)
    this.pos += 8
  }

  /**
   * Nanoseconds since the epoch of an HrTime, as fixed64. Seconds × 10⁹ exceeds a double's exact
   * range, so it is summed in two 32-bit halves: seconds = high·2¹⁶ + low, each part times 10⁹
   * stays exact (< 2⁴⁷).
   */
  time(time: HrTime): void {
    const seconds = Math.trunc(time[0])
    const low = (seconds % 65_536) * 1e9 + Math.trunc(time[1])
    const high = Math.floor(seconds / 65_536) * 1e9
    const sum = (low % TWO_32) + (high % 65_536) * 65_536
    this.fixed32(sum % TWO_32)
    this.fixed32(Math.floor(low / TWO_32) + Math.floor(high / 65_536) + Math.floor(sum / TWO_32))
  }

  /** A length-prefixed string (its UTF-8 bytes); short ASCII ones written here, the rest by Buffer. */
  string(value: string): void {
    const chars = value.length
    if (chars < 0x80) {
      this.ensure(chars + 1)
      const buf = this.buf
      const start = this.pos
      let at = start + 1
      let i = 0
      for (; i < chars; i++) {
        const code = value.charCodeAt(i)
        if (code > 0x7f) break
        buf[at++] = code
      }
      if (i === chars) {
        buf[start] = chars
        this.pos = at
        return
      }
    }
    const length = Buffer.byteLength(value)
    this.varint(length)
    this.ensure(length)
    this.pos += this.buf.write(value, this.pos)
  }

  /** A length-prefixed string likely to repeat, copied from its encoding the first time. */
  known(value: string): void {
    let encoded = cache.get(value)
    if (encoded === undefined) {
      if (value.length > CACHE_MAX_LENGTH) return this.string(value)
      const bytes = Buffer.from(value)
      encoded = Buffer.allocUnsafe(varintSize(bytes.length) + bytes.length)
      bytes.copy(encoded, putVarint(encoded, 0, bytes.length))
      if (cache.size >= CACHE_LIMIT) cache.clear()
      cache.set(value, encoded)
    }
    // TypedArray#set is a builtin: as fast before the encoder is optimized as after.
    this.ensure(encoded.length)
    this.buf.set(encoded, this.pos)
    this.pos += encoded.length
  }

  /** A length-prefixed id from its hex (16 or 8 bytes); a character that is not hex counts as 0. */
  hex(id: string): void {
    const length = id.length >>> 1
    this.varint(length)
    this.ensure(length)
    const buf = this.buf
    let at = this.pos
    for (let i = 0; i < length * 2; i += 2) buf[at++] = ((HEX[id.charCodeAt(i)] ?? 0) << 4) | (HEX[id.charCodeAt(i + 1)] ?? 0)
    this.pos = at
  }

  /** Bytes already encoded, copied as they are (no length). */
  raw(value: Uint8Array): void {
    this.ensure(value.length)
    this.buf.set(value, this.pos)
    this.pos += value.length
  }

  bytes(value: Uint8Array): void {
    this.varint(value.length)
    this.ensure(value.length)
    this.buf.set(value, this.pos)
    this.pos += value.length
  }

  /** Field `field`: a message written by `write` from `value`. */
  nested<T>(field: number, write: (w: Writer, value: T) => void, value: T): void {
    this.tag(field, LEN)
    const at = this.open()
    write(this, value)
    this.close(at)
  }

  /** Starts a length-delimited message: one byte kept for its length. */
  open(): number {
    this.ensure(1)
    return this.pos++
  }

  /** Ends the message opened at `at`, writing its length there, moving it when it needs more bytes. */
  close(at: number): void {
    const length = this.pos - at - 1
    if (length < 0x80) {
      this.buf[at] = length
      return
    }
    const extra = varintSize(length) - 1
    this.ensure(extra)
    this.buf.copyWithin(at + 1 + extra, at + 1, this.pos)
    putVarint(this.buf, at, length)
    this.pos += extra
  }
}
