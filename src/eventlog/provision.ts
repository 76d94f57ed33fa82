/**
 * Applies the stream definitions idempotently: creates what is missing, updates settings that a
 * stream can change in place, and refuses an existing stream whose immutable settings differ,
 * saying what differs (a work queue cannot become a log, and file storage cannot become memory).
 */
import { DiscardPolicy, RetentionPolicy, StorageType, type StreamConfig, type StreamInfo } from "nats"
import { IMMUTABLE_FIELDS, type StreamDefinition } from "../../streams/definitions.js"
import type { Connection } from "./connection.js"
import { isStreamNotFound } from "./errors.js"

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

/** The definition in nats.js's types (its enums are the server's strings). */
const toConfig = (d: StreamDefinition): Partial<StreamConfig> & { name: string } => ({
  ...d,
  subjects: [...d.subjects],
  retention: d.retention === "limits" ? RetentionPolicy.Limits : RetentionPolicy.Workqueue,
  storage: d.storage === "file" ? StorageType.File : StorageType.Memory,
  discard: d.discard === "old" ? DiscardPolicy.Old : DiscardPolicy.New
})

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

export const provisionStream = async (conn: Connection, wanted: StreamDefinition): Promise<ProvisionOutcome> => {
  const jsm = await conn.jetstreamManager()
  let info: StreamInfo
  try {
    info = await jsm.streams.info(wanted.name)
  } catch (error) {
    if (!isStreamNotFound(error)) throw error
    await jsm.streams.add(toConfig(wanted))
    return { stream: wanted.name, action: "created", changed: [] }
  }
  const { incompatible, changed } = diffStream(info.config, wanted)
  if (incompatible.length > 0) throw new IncompatibleStreamError(wanted.name, incompatible)
  if (changed.length === 0) return { stream: wanted.name, action: "unchanged", changed }
  await jsm.streams.update(wanted.name, { ...info.config, ...toConfig(wanted) })
  return { stream: wanted.name, action: "updated", changed }
}

/** Applies every definition in order. */
export const provisionStreams = async (
  conn: Connection,
  definitions: ReadonlyArray<StreamDefinition>
): Promise<ReadonlyArray<ProvisionOutcome>> => {
  const outcomes: Array<ProvisionOutcome> = []
  for (const definition of definitions) outcomes.push(await provisionStream(conn, definition))
  return outcomes
}

/** Each stream's settings and state as the server reports them (`codeq streams show`). */
export const describeStreams = async (conn: Connection, names: ReadonlyArray<string>): Promise<ReadonlyArray<Pick<StreamInfo, "config" | "state">>> => {
  const jsm = await conn.jetstreamManager()
  return Promise.all(names.map(async (name) => {
    const { config, state } = await jsm.streams.info(name)
    return { config, state }
  }))
}
