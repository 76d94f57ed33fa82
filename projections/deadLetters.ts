/**
 * The dead-letter index (DESIGN §4): a key-value entry per dead-lettered task, keyed
 * `<tenant>.<command>.<taskId>`, so the queue of one tenant and command lists without scanning the
 * log. A requeue or a purge removes the entry. Replaying the log rebuilds it exactly.
 */
import type { Bucket } from "../src/eventlog/kv.js"
import { deadLetterKey } from "../streams/definitions.js"
import type { Sink } from "./runtime.js"
import type { DeadLetterEntry } from "../src/tasks/view.js"
import { utf8 } from "../src/eventlog/utf8.js"

export const deadLetters = (kv: Bucket): Sink => ({
  name: "dead-letters",
  apply: ({ stored, after }) => {
    const e = stored.event
    if (after === null) return undefined
    const key = deadLetterKey(e.tenant, after.command, e.taskId)
    if (e.type === "TaskDeadLettered") {
      // The current state decides, so replaying an old dead letter after its requeue adds nothing.
      if (after.status !== "DEAD_LETTERED" || after.purged) return undefined
      const entry: DeadLetterEntry = { taskId: e.taskId, tenant: e.tenant, command: after.command, reason: e.reason, attempts: after.attempts, deadLetteredAt: e.at }
      return kv.put(key, utf8(JSON.stringify(entry)))
    }
    if (e.type === "TaskRequeued" || e.type === "TaskPurged") return kv.delete(key)
    return undefined
  }
})
