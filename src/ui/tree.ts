/// <reference lib="dom" />
/**
 * A task's span tree as replay rebuilds it from the log (`GET /v1/codeq/tasks/:id/trace`): each
 * span under its parent, its duration as a bar on the task's time axis, the create's remote
 * parent (the producer's or the HTTP server's span, not in the log) marked, and every problem the
 * audit found highlighted on its span and listed. For another tenant's task the spans' attributes
 * and status messages are not shown.
 */
import type { TaskTrace, TraceSpan } from "./api.js"
import { h, type Child } from "./dom.js"
import { formatDuration, shortId } from "./format.js"

interface Axis {
  readonly start: bigint
  readonly span: bigint
}

const allSpans = (spans: ReadonlyArray<TraceSpan>): Array<TraceSpan> => spans.flatMap((s) => [s, ...allSpans(s.children)])

const axisOf = (spans: ReadonlyArray<TraceSpan>): Axis => {
  let start: bigint | undefined
  let end: bigint | undefined
  for (const s of allSpans(spans)) {
    const from = BigInt(s.startTimeUnixNano)
    const to = BigInt(s.endTimeUnixNano)
    if (start === undefined || from < start) start = from
    if (end === undefined || to > end) end = to
  }
  return { start: start ?? 0n, span: end === undefined || start === undefined || end <= start ? 1n : end - start }
}

/** Percent of the axis, to 0.01 %. */
const percent = (part: bigint, axis: Axis): number => Number((part * 10_000n) / axis.span) / 100

const bar = (s: TraceSpan, axis: Axis): HTMLElement => {
  const element = h("div", { class: "bar" })
  // Set through the CSSOM, which the page's Content-Security-Policy allows (style attributes it would not).
  const left = percent(BigInt(s.startTimeUnixNano) - axis.start, axis)
  element.style.left = `${left}%`
  element.style.width = `${Math.max(0, Math.min(100 - left, percent(BigInt(s.endTimeUnixNano) - BigInt(s.startTimeUnixNano), axis)))}%`
  return h("div", { class: "track", "aria-hidden": "true" }, element)
}

const attributesOf = (s: TraceSpan): HTMLElement | undefined => {
  const entries = Object.entries(s.attributes)
  if (entries.length === 0) return undefined
  return h(
    "details",
    { class: "span-meta" },
    h("summary", {}, "attributes"),
    h("dl", { class: "summary mono" }, ...entries.flatMap(([key, value]) => [h("dt", {}, key), h("dd", {}, typeof value === "string" ? value : JSON.stringify(value))]))
  )
}

const spanItem = (s: TraceSpan, trace: TaskTrace, axis: Axis, owned: boolean, depth: number): HTMLLIElement => {
  const badges: Array<Child> = []
  if (depth === 0 && s.parentSpanId !== undefined)
    badges.push(
      s.parentSpanId === trace.remoteParentSpanId
        ? h("span", { class: "badge remote", title: `remote parent span ${s.parentSpanId}`, "data-remote-parent": s.parentSpanId }, `remote parent ${shortId(s.parentSpanId)}`)
        : h("span", { class: "badge problem", title: `parent span ${s.parentSpanId}` }, `parent ${shortId(s.parentSpanId)} not in the log`)
    )
  if (s.status.code === "ERROR") badges.push(h("span", { class: "badge status-error" }, owned && s.status.message !== undefined ? `error: ${s.status.message}` : "error"))
  if (s.problems.length > 0) badges.push(h("span", { class: "badge problem" }, s.problems.length === 1 ? "1 problem" : `${s.problems.length} problems`))
  const problems = s.problems.length === 0 ? undefined : h("ul", { class: "problems" }, ...s.problems.map((p) => h("li", {}, `${p.rule}: ${p.message}`)))
  const label = h(
    "div",
    { class: depth > 0 ? "span-label nested" : "span-label" },
    h("span", { class: "span-name" }, s.name),
    ...badges,
    h("div", { class: "span-meta" }, `${s.event} #${s.seq} · ${s.scope} · span ${s.spanId}`),
    problems,
    owned ? attributesOf(s) : undefined
  )
  // Nesting indents the label only, so every bar is drawn on the same axis.
  label.style.paddingLeft = `${depth * 1.25}rem`
  return h(
    "li",
    { "data-span-id": s.spanId, "data-span-name": s.name },
    h("div", { class: s.problems.length > 0 ? "span-row has-problem" : "span-row" }, label, bar(s, axis), h("div", { class: "duration" }, formatDuration(s.durationMs))),
    s.children.length === 0 ? undefined : h("ul", {}, ...s.children.map((child) => spanItem(child, trace, axis, owned, depth + 1)))
  )
}

/** The tree, its trace's problems and untraced events; `jaeger` is a link to the trace, when configured. */
export const renderTrace = (trace: TaskTrace, owned: boolean, jaeger: HTMLAnchorElement | undefined): HTMLElement => {
  const axis = axisOf(trace.spans)
  const count = allSpans(trace.spans).length
  return h(
    "div",
    { class: "trace" },
    h(
      "div",
      { class: "trace-head" },
      h("span", {}, "trace ", h("span", { class: "mono", "data-trace-id": trace.traceId ?? "" }, trace.traceId ?? "unknown")),
      h("span", {}, `${count} span${count === 1 ? "" : "s"} · total ${formatDuration(Number(axis.span) / 1e6)}`),
      h("span", {}, trace.closed ? "task closed" : "task still open"),
      jaeger
    ),
    trace.problems.length === 0
      ? h("p", { class: "span-meta", "data-audit": "clean" }, "Audit: no problems.")
      : h(
          "div",
          { class: "note", "data-audit": "problems" },
          h("strong", {}, `Audit: ${trace.problems.length} problem${trace.problems.length === 1 ? "" : "s"}`),
          h("ul", { class: "problems" }, ...trace.problems.map((p) => h("li", {}, `${p.rule}${p.seq !== undefined ? ` (event #${p.seq})` : ""}: ${p.message}`)))
        ),
    count === 0 ? h("p", { class: "empty" }, "No span could be rebuilt.") : h("ul", { class: "tree", "aria-label": "span tree" }, ...trace.spans.map((s) => spanItem(s, trace, axis, owned, 0))),
    trace.untraced.length === 0 ? undefined : h("p", { class: "span-meta" }, `Events without trace headers: ${trace.untraced.map((u) => `${u.event} #${u.seq}`).join(", ")}`)
  )
}
