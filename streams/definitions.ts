/**
 * The streams codeq runs on, declared as data (DESIGN §2, §3). Provisioning applies them; the
 * broker, the SDK and the CLI derive every stream name and subject from `Naming`.
 */

/** How streams and subjects are named. Defaults follow DESIGN §2; tests may isolate with others. */
export interface Naming {
  /** Stream name prefix: `<prefix>_EVENTS`, `<prefix>_CLAIMS`. Default `CODEQ`. */
  readonly streamPrefix: string
  /** First subject token: `<root>.evt.…`, `<root>.claim.…`. Default `codeq`. */
  readonly subjectRoot: string
}

export const DEFAULT_NAMING: Naming = { streamPrefix: "CODEQ", subjectRoot: "codeq" }

export const eventsStream = (n: Naming) => `${n.streamPrefix}_EVENTS`
export const claimsStream = (n: Naming) => `${n.streamPrefix}_CLAIMS`
export const webhooksStream = (n: Naming) => `${n.streamPrefix}_WEBHOOKS`

/** A webhook to deliver (the webhook outbox): one message per terminal event of a task with a webhook. */
export const webhookJobSubject = (n: Naming, tenant: string) => `${n.subjectRoot}.hook.${tenant}`
/** Where the webhook outbox's barriers go: in the webhooks stream, on no tenant (never stored). */
export const webhookBarrierSubject = (n: Naming) => `${n.subjectRoot}.hook._barrier`

/** All events of one task share this subject: per-task optimistic concurrency rests on it. */
export const eventSubject = (n: Naming, tenant: string, taskId: string) => `${n.subjectRoot}.evt.${tenant}.${taskId}`
export const eventSubjects = (n: Naming, tenant = "*") => `${n.subjectRoot}.evt.${tenant}.*`

/** Claim subjects: one per tenant, command and priority lane (0-9). */
export const claimSubject = (n: Naming, tenant: string, command: string, lane: number) =>
  `${n.subjectRoot}.claim.${tenant}.${command}.${lane}`
/** Where the dispatcher's barriers go: in the claims stream, on no lane (they are never stored). */
export const claimBarrierSubject = (n: Naming) => `${n.subjectRoot}.claim._barrier`
export const claimSubjects = (n: Naming, tenant = "*", command = "*") => `${n.subjectRoot}.claim.${tenant}.${command}.*`

/**
 * Where readers of the read model ask the projections' leader to write what it has coalesced
 * before they read (core NATS request and reply, in no stream): listings and queue statistics.
 */
export const readModelFlushSubject = (n: Naming) => `${n.subjectRoot}.ctl.projections.flush`
/** How long a reader waits for that before reading anyway (no leader answers during an election). */
export const READ_MODEL_FLUSH_TIMEOUT_MS = 2_000

/** Parses `<root>.evt.<tenant>.<taskId>`; undefined when the subject is not an event subject. */
export const parseEventSubject = (n: Naming, subject: string): { tenant: string; taskId: string } | undefined => {
  const parts = subject.split(".")
  if (parts.length !== 4 || parts[0] !== n.subjectRoot || parts[1] !== "evt") return undefined
  return { tenant: parts[2] ?? "", taskId: parts[3] ?? "" }
}

export interface StreamSettings {
  /** Replicas for both streams (1 in development, 3 in production). */
  readonly replicas: number
  /** Event retention by age in seconds; 0 keeps events forever. */
  readonly maxAgeSeconds: number
  /** Event retention by size in bytes; -1 is unlimited. */
  readonly maxBytes: number
  /** How long a claim message id is remembered, so a replayed dispatcher adds no duplicates. */
  readonly claimDedupSeconds: number
}

export const DEFAULT_STREAM_SETTINGS: StreamSettings = { replicas: 1, maxAgeSeconds: 0, maxBytes: -1, claimDedupSeconds: 300 }

/** Settings a stream cannot change once created: a difference means the stream must be rebuilt. */
export const IMMUTABLE_FIELDS = ["retention", "storage"] as const

/**
 * A stream as data, in the server's own field names and units (durations in nanoseconds), so a
 * definition compares field by field with what the server reports. `src/eventlog/provision.ts`
 * applies it.
 */
export interface StreamDefinition {
  readonly name: string
  readonly description: string
  readonly subjects: ReadonlyArray<string>
  /** `limits`: a log kept by age and size; `workqueue`: a message goes once acknowledged. */
  readonly retention: "limits" | "workqueue"
  readonly storage: "file" | "memory"
  readonly num_replicas: number
  /** Nanoseconds; 0 keeps messages forever. */
  readonly max_age: number
  readonly max_bytes: number
  readonly discard: "old" | "new"
  readonly allow_direct: boolean
  /** Nanoseconds a message id is remembered for deduplication. */
  readonly duplicate_window: number
}

const nanos = (ms: number) => ms * 1_000_000

export const streamDefinitions = (
  n: Naming = DEFAULT_NAMING,
  s: StreamSettings = DEFAULT_STREAM_SETTINGS
): ReadonlyArray<StreamDefinition> => [
  {
    name: eventsStream(n),
    description: "codeq task events: the log every other structure is derived from",
    subjects: [`${n.subjectRoot}.evt.>`],
    retention: "limits",
    storage: "file",
    num_replicas: s.replicas,
    max_age: nanos(s.maxAgeSeconds * 1000),
    max_bytes: s.maxBytes,
    discard: "old",
    allow_direct: true,
    duplicate_window: nanos(120_000)
  },
  {
    name: claimsStream(n),
    description: "codeq claim messages: the work queue workers pull from",
    subjects: [`${n.subjectRoot}.claim.>`],
    retention: "workqueue",
    storage: "file",
    num_replicas: s.replicas,
    max_age: 0,
    max_bytes: -1,
    discard: "old",
    allow_direct: false,
    duplicate_window: nanos(s.claimDedupSeconds * 1000)
  },
  {
    name: webhooksStream(n),
    description: "codeq webhook outbox: deliveries still to make, derived from the log's terminal events",
    subjects: [`${n.subjectRoot}.hook.>`],
    retention: "workqueue",
    storage: "file",
    num_replicas: s.replicas,
    max_age: 0,
    max_bytes: -1,
    discard: "old",
    allow_direct: false,
    duplicate_window: nanos(s.claimDedupSeconds * 1000)
  }
]

/** Key-value bucket of the dead-letter index (`<tenant>.<command>.<taskId>`), derived from the log. */
export const deadLetterBucket = (n: Naming) => `${n.streamPrefix}_DLQ`
export const deadLetterKey = (tenant: string, command: string, taskId: string) => `${tenant}.${command}.${taskId}`

/** Key-value bucket of the projections' leader lease and checkpoint (keys `leader`, `position`). */
export const projectionsBucket = (n: Naming) => `${n.streamPrefix}_PROJECTIONS`

/** Key-value bucket of the task-state read model (`<tenant>.<taskId>` → TaskState JSON). */
export const taskStateBucket = (n: Naming) => `${n.streamPrefix}_TASKS`
export const taskStateKey = (tenant: string, taskId: string) => `${tenant}.${taskId}`

/**
 * Key-value bucket of the open-task index: an entry per task still waiting or leased, under its
 * task-state key (`<tenant>.<taskId>` → OpenTask JSON), written with the task's document.
 */
export const openTaskBucket = (n: Naming) => `${n.streamPrefix}_OPEN`
