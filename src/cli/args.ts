/**
 * Command-line arguments for every `codeq` command: flags declared per command (unknown ones are
 * an error, never ignored), `--help` everywhere, numbers bounded, and one error type whose message
 * is the one line to print. Exit codes: 0 done, 1 failed (NATS, the log, a refused operation),
 * 2 wrong usage, 3 a check found problems (`replay --audit`).
 */
import { parseArgs } from "node:util"

export const EXIT = { ok: 0, failed: 1, usage: 2, problems: 3 } as const

/** Wrong usage: printed as `codeq: <message>` with a pointer to `--help`, exit 2. */
export class UsageError extends Error {
  override readonly name = "UsageError"
}

export interface FlagSpec {
  readonly type: "string" | "boolean"
  readonly short?: string
  readonly help: string
  /** For numbers given as strings: the accepted range. */
  readonly range?: readonly [number, number]
}

export interface CommandSpec {
  readonly usage: string
  readonly summary: string
  readonly flags: Readonly<Record<string, FlagSpec>>
}

export interface Parsed {
  readonly flags: Readonly<Record<string, string | boolean | undefined>>
  readonly positionals: ReadonlyArray<string>
}

/** The help text of a command: usage line, summary, flags. */
export const helpOf = (spec: CommandSpec): string => {
  const rows = Object.entries(spec.flags).map(([name, flag]) => {
    const left = `  --${name}${flag.type === "string" ? " <value>" : ""}${flag.short !== undefined ? `, -${flag.short}` : ""}`
    return `${left.padEnd(30)} ${flag.help}`
  })
  return [`usage: ${spec.usage}`, "", spec.summary, ...(rows.length > 0 ? ["", "options:", ...rows] : []), `  ${"--help, -h".padEnd(28)} this text`].join("\n")
}

/** Parses `argv` against `spec`; undefined when `--help` was asked for (the help is printed). */
export const parse = (spec: CommandSpec, argv: ReadonlyArray<string>, print: (text: string) => void = (t) => process.stdout.write(`${t}\n`)): Parsed | undefined => {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = { help: { type: "boolean", short: "h" } }
  for (const [name, flag] of Object.entries(spec.flags)) options[name] = flag.short === undefined ? { type: flag.type } : { type: flag.type, short: flag.short }
  let result: ReturnType<typeof parseArgs>
  try {
    result = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true })
  } catch (error) {
    // Node's messages run on with advice about positionals: the first sentence names the problem.
    const first = (error instanceof Error ? error.message : String(error)).split(". ")[0] ?? ""
    throw new UsageError(`${first} (see codeq ${spec.usage.split(" ")[1] ?? ""} --help)`)
  }
  if (result.values.help === true) {
    print(helpOf(spec))
    return undefined
  }
  for (const [name, flag] of Object.entries(spec.flags)) {
    const value = result.values[name]
    if (flag.range !== undefined && typeof value === "string") integerFlag(name, value, flag.range)
  }
  return { flags: result.values as Record<string, string | boolean | undefined>, positionals: result.positionals }
}

/** An integer flag within `range`, or a UsageError naming the flag and the rule. */
export const integerFlag = (name: string, value: string, [min, max]: readonly [number, number]): number => {
  const n = Number(value)
  if (!/^-?\d+$/.test(value.trim()) || n < min || n > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max} (got ${JSON.stringify(value)})`)
  return n
}

/** A string flag that must be present. */
export const required = (parsed: Parsed, name: string): string => {
  const value = parsed.flags[name]
  if (typeof value !== "string" || value === "") throw new UsageError(`--${name} is required`)
  return value
}

export const optionalString = (parsed: Parsed, name: string): string | undefined => {
  const value = parsed.flags[name]
  return typeof value === "string" ? value : undefined
}

/** Rows as an aligned text table for people. */
export const table = <R extends object>(rows: ReadonlyArray<R>, columns: ReadonlyArray<string>): string => {
  const cell = (row: R, column: string) => {
    const v: unknown = (row as Record<string, unknown>)[column]
    return v === undefined || v === null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v)
  }
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r, c).length)))
  const line = (values: ReadonlyArray<string>) => values.map((v, i) => v.padEnd(widths[i] ?? 0)).join("  ").trimEnd()
  return [line(columns), line(widths.map((w) => "-".repeat(w))), ...rows.map((r) => line(columns.map((c) => cell(r, c))))].join("\n")
}
