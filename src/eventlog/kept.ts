/**
 * A handle opened on first use and kept (a bucket, a stream's consumers): the first call runs
 * `open`, every later one gets the same promise — unless it rejected. A failure (the server
 * unreachable at that moment) is not kept: the next call runs `open` again, instead of every later
 * call failing for good.
 */
export const keptUnlessFailed = <T>(open: () => Promise<T>): (() => Promise<T>) => {
  let kept: Promise<T> | undefined
  return () =>
    (kept ??= open().catch((error: unknown) => {
      kept = undefined
      throw error
    }))
}
