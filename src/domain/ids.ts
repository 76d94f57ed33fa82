/**
 * Task ids. A task created with an idempotency key gets a UUIDv5 of (tenant, key), so a repeated
 * create lands on the same subject and the log's expected-sequence-0 check finds it: no dedup
 * window, no side table, tenant-scoped by construction.
 */
import { createHash, randomUUID } from "node:crypto"

/** codeq's UUIDv5 namespace for idempotency keys (a fixed random UUID). */
export const IDEMPOTENCY_NAMESPACE = "6f1d2c7e-3b9a-4e51-9c0d-2a8f5b7e4c13"

const uuidBytes = (uuid: string): Buffer => Buffer.from(uuid.replace(/-/g, ""), "hex")

/** RFC 4122 version 5 UUID (SHA-1 of namespace + name). */
export const uuidV5 = (name: string, namespace: string = IDEMPOTENCY_NAMESPACE): string => {
  const hash = createHash("sha1").update(uuidBytes(namespace)).update(name, "utf8").digest()
  hash[6] = ((hash[6] ?? 0) & 0x0f) | 0x50
  hash[8] = ((hash[8] ?? 0) & 0x3f) | 0x80
  const hex = hash.subarray(0, 16).toString("hex")
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`
}

/** The task id for an idempotency key under a tenant. */
export const idempotentTaskId = (tenant: string, key: string): string => uuidV5(`${tenant}\u0000${key}`)

/** What the log records of an idempotency key: its SHA-256, never the key. */
export const hashIdempotencyKey = (key: string): string => createHash("sha256").update(key, "utf8").digest("hex")

export const newTaskId = (): string => randomUUID()
