/**
 * The built `codeq` binary as tests run it (the global setup builds dist/): its environment, named
 * in full so no test inherits this process's NATS_URL, and one run of a command to its end.
 */
import { execFile } from "node:child_process"
import type { Naming } from "../../streams/definitions.js"

export const CODEQ_BIN = "dist/src/cli/main.js"

/** The environment of a codeq child: only what the test names; never an embedded server. */
export const codeqEnv = (natsUrl: string, naming: Naming, extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
  PATH: process.env.PATH ?? "",
  HOME: process.env.HOME ?? "",
  NATS_URL: natsUrl,
  CODEQ_EMBEDDED_NATS: "false",
  CODEQ_STREAM_PREFIX: naming.streamPrefix,
  CODEQ_SUBJECT_ROOT: naming.subjectRoot,
  LOG_LEVEL: "warn",
  ...extra
})

export interface CodeqRun {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs `codeq <args>` to its end (60 s at most): its exit code and output. */
export const runCodeq = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv): Promise<CodeqRun> =>
  new Promise((resolve) => {
    execFile(process.execPath, [CODEQ_BIN, ...args], { env, timeout: 60_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr })
    )
  })
