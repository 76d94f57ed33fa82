/**
 * The heap of a process that replays: one V8 setting, made by `codeq replay` before it reads.
 *
 * An audit holds a few thousand open tasks, each alive for ~13,000 events of the log, and makes a
 * record per event that dies at once. V8's allocation-site pretenuring sees the first tasks outlive
 * the small young generation of a process just started and from then on allocates objects of those
 * sites in the old generation, where, dead, they keep what they point to alive through every
 * scavenge until the next full collection. Measured over 10⁶ events (`npm run bench -- replay`):
 * ~190 MB promoted and ~0.6 s of scavenges with it, ~12 MB and ~0.2 s without — ~15 % of the run.
 *
 * Process-wide, so the library never sets it by itself: the CLI does, in a process that exists to
 * replay; an embedder's own replay process may call it too.
 */
import { setFlagsFromString } from "node:v8"

/** Turns V8's allocation-site pretenuring off for this process (calling it again changes nothing). */
export const tuneHeapForReplay = (): void => setFlagsFromString("--no-allocation-site-pretenuring")
