/**
 * The progress line of a replay on a terminal: a bar, events read of the selection, rate and ETA
 * (or, following, what has been read and what is open). Drawn on stderr when it is a TTY, at most
 * ten times a second; nothing at all when stderr is piped or redirected.
 */
import type { ReplayProgress } from "./replay.js"

const group = (n: number): string => Math.round(n).toLocaleString("en-US")

const duration = (seconds: number): string =>
  !Number.isFinite(seconds) ? "?" : seconds < 60 ? `${Math.ceil(seconds)} s` : `${Math.floor(seconds / 60)} min ${Math.ceil(seconds % 60)} s`

/** The line for a progress report `elapsedMs` into the replay. */
export const progressLine = (p: ReplayProgress, elapsedMs: number, following: boolean, width = 28): string => {
  const rate = elapsedMs > 0 ? (p.read / elapsedMs) * 1000 : 0
  if (following && p.caughtUp) return `following · ${group(p.read)} events · ${group(p.openTasks)} open tasks · waiting for new events`
  const all = p.read + (p.pending ?? Math.max(0, p.total - p.read))
  const share = all === 0 ? 1 : Math.min(1, p.read / all)
  const filled = Math.round(share * width)
  const eta = rate > 0 ? (all - p.read) / rate : Number.POSITIVE_INFINITY
  return `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${(share * 100).toFixed(0).padStart(3)}% ${group(p.read)}/${group(all)} events · ${group(rate)} ev/s · ETA ${duration(eta)} · ${group(p.openTasks)} open tasks`
}

export class ProgressBar {
  private readonly started = Date.now()
  private lastDrawn = 0
  private drawn = false

  constructor(
    private readonly out: NodeJS.WriteStream = process.stderr,
    private readonly following = false,
    private readonly enabled: boolean = out.isTTY === true
  ) {}

  update(p: ReplayProgress): void {
    const now = Date.now()
    if (!this.enabled || now - this.lastDrawn < 100) return
    this.lastDrawn = now
    this.drawn = true
    this.out.write(`\r\x1b[2K${progressLine(p, now - this.started, this.following)}`)
  }

  /** Clears the line, so what follows starts on a clean one. */
  clear(): void {
    if (this.enabled && this.drawn) this.out.write("\r\x1b[2K")
    this.drawn = false
  }
}
