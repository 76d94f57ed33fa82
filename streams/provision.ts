/**
 * Applies the stream definitions idempotently: creates what is missing, updates settings that a
 * stream can change in place, and refuses an existing stream whose immutable settings differ,
 * saying what differs (a work queue cannot become a log, and file storage cannot become memory).
 */
import type { JetStreamManager, StreamInfo } from "nats"
import { IMMUTABLE_FIELDS, type StreamDefinition } from "./definitions.js"

export type ProvisionAction = "created" | "updated" | "unchanged"

export interface ProvisionOutcome {
  readonly stream: string
  readonly action: ProvisionAction
  /** Fields updated in place. */
  readonly changed: ReadonlyArray<string>
}

/** An existing stream that cannot be brought to the definition without data loss. */
export class IncompatibleStreamError extends Error {
  readonly _tag = "IncompatibleStreamError"
  constructor(
    readonly stream: string,
    readonly differences: ReadonlyArray<string>
  ) {
    super(
      `stream ${stream} exists with incompatible settings (${differences.join("; ")}); ` +
        `back it up and delete it, or point codeq at another stream prefix`
    )
  }
}

const MUTABLE_FIELDS = [
  "subjects",
  "num_replicas",
  "max_age",
  "max_bytes",
  "discard",
  "allow_direct",
  "duplicate_window",
  "description"
] as const

const same = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null)

const isNotFound = (error: unknown) =>
  error instanceof Error && /stream not found/i.test(error.message)

/** Compares an existing stream with its definition. */
export const diffStream = (
  existing: StreamInfo["config"],
  wanted: StreamDefinition
): { readonly incompatible: ReadonlyArray<string>; readonly changed: ReadonlyArray<string> } => ({
  incompatible: IMMUTABLE_FIELDS.filter((field) => !same(existing[field], wanted[field])).map(
    (field) => `${field} is ${String(existing[field])}, wanted ${String(wanted[field])}`
  ),
  changed: MUTABLE_FIELDS.filter((field) => !same(existing[field], wanted[field]))
})

export const provisionStream = async (jsm: JetStreamManager, wanted: StreamDefinition): Promise<ProvisionOutcome> => {
  let info: StreamInfo
  try {
    info = await jsm.streams.info(wanted.name)
  } catch (error) {
    if (!isNotFound(error)) throw error
    await jsm.streams.add({ ...wanted })
    return { stream: wanted.name, action: "created", changed: [] }
  }
  const { incompatible, changed } = diffStream(info.config, wanted)
  if (incompatible.length > 0) throw new IncompatibleStreamError(wanted.name, incompatible)
  if (changed.length === 0) return { stream: wanted.name, action: "unchanged", changed }
  await jsm.streams.update(wanted.name, { ...info.config, ...wanted })
  return { stream: wanted.name, action: "updated", changed }
}

/** Applies every definition in order. */
export const provisionStreams = async (
  jsm: JetStreamManager,
  definitions: ReadonlyArray<StreamDefinition>
): Promise<ReadonlyArray<ProvisionOutcome>> => {
  const outcomes: Array<ProvisionOutcome> = []
  for (const definition of definitions) outcomes.push(await provisionStream(jsm, definition))
  return outcomes
}
