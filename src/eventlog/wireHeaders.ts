/**
 * Headers of a message we publish, kept as plain key/value pairs and written out as the NATS
 * header block in one string.
 *
 * Why not nats.js's `headers()`: its `set` deletes and appends through a key search that copies
 * the key list and canonicalises the key each time — measured on the producer's create path, its
 * headers made ~9 KB of garbage per event (a third of everything the create allocated) and
 * young-generation collections were 30 % of the producer's CPU. nats.js only calls `encode()` on
 * the headers of a publish, which is what this class is for; the read methods of `MsgHdrs` are
 * here so it can stand wherever nats.js headers are taken.
 */
import { Match, type MsgHdrs } from "nats"
import { utf8 } from "./utf8.js"

/** A header name: visible ASCII except ':' (RFC 7230 token characters and more, as NATS accepts). */
const KEY = /^[!-9;-~]+$/
const BREAK = /[\r\n]/
/**
 * Names already found valid. codeq sets the same few on every event: checked once, they are
 * looked up instead of matched again (at most `MAX_CHECKED` remembered).
 */
const checked = new Set<string>()
const MAX_CHECKED = 256

const same = (a: string, b: string, match: Match): boolean => (match === Match.Exact ? a === b : a.toLowerCase() === b.toLowerCase())

export class WireHeaders implements MsgHdrs {
  /** Keys and values, alternating, in the order they were added. */
  private readonly pairs: Array<string> = []
  readonly hasError = false
  readonly status = ""
  readonly code = 0
  readonly description = ""

  /** Sets `key` to `value` (replacing what it had). Throws on a malformed key or a value with a line break. */
  set(key: string, value: string, match: Match = Match.Exact): void {
    if (this.pairs.length > 0) this.delete(key, match)
    this.append(key, value)
  }

  append(key: string, value: string, _match?: Match): void {
    if (!checked.has(key)) {
      if (!KEY.test(key)) throw new Error(`invalid header name '${key}'`)
      if (checked.size < MAX_CHECKED) checked.add(key)
    }
    if (BREAK.test(value)) throw new Error(`invalid value of header ${key}: line breaks are not allowed`)
    this.pairs.push(key, value.trim())
  }

  get(key: string, match: Match = Match.Exact): string {
    for (let i = 0; i < this.pairs.length; i += 2) if (same(this.pairs[i] as string, key, match)) return this.pairs[i + 1] as string
    return ""
  }

  last(key: string, match: Match = Match.Exact): string {
    const all = this.values(key, match)
    return all[all.length - 1] ?? ""
  }

  has(key: string, match: Match = Match.Exact): boolean {
    for (let i = 0; i < this.pairs.length; i += 2) if (same(this.pairs[i] as string, key, match)) return true
    return false
  }

  keys(): Array<string> {
    const keys: Array<string> = []
    for (let i = 0; i < this.pairs.length; i += 2) if (!keys.includes(this.pairs[i] as string)) keys.push(this.pairs[i] as string)
    return keys
  }

  values(key: string, match: Match = Match.Exact): Array<string> {
    const values: Array<string> = []
    for (let i = 0; i < this.pairs.length; i += 2) if (same(this.pairs[i] as string, key, match)) values.push(this.pairs[i + 1] as string)
    return values
  }

  delete(key: string, match: Match = Match.Exact): void {
    for (let i = this.pairs.length - 2; i >= 0; i -= 2) if (same(this.pairs[i] as string, key, match)) this.pairs.splice(i, 2)
  }

  *[Symbol.iterator](): IterableIterator<[string, Array<string>]> {
    for (const key of this.keys()) yield [key, this.values(key)]
  }

  /** The header block as nats.js sends it: `NATS/1.0`, a line per header, a blank line. */
  toString(): string {
    let block = "NATS/1.0\r\n"
    for (let i = 0; i < this.pairs.length; i += 2) block += `${this.pairs[i] as string}: ${this.pairs[i + 1] as string}\r\n`
    return `${block}\r\n`
  }

  /** Called by nats.js's publish for the bytes of the header block. */
  encode(): Uint8Array {
    return utf8(this.toString())
  }
}
