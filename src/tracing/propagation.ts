/**
 * How trace context crosses process boundaries (DESIGN §6). codeq always speaks W3C trace context
 * and baggage, so a producer's `traceparent` flows through the broker to workers and webhook
 * receivers even when tracing is disabled. B3 is always understood on the way in (single `b3`
 * header and the multi-header `X-B3-*` form) and is written on the way out only when
 * `OTEL_PROPAGATORS` asks for it.
 */
import {
  ROOT_CONTEXT,
  context,
  defaultTextMapGetter,
  defaultTextMapSetter,
  propagation,
  trace,
  type Context,
  type TextMapGetter,
  type TextMapPropagator,
  type TextMapSetter
} from "@opentelemetry/api"
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks"
import { W3CBaggagePropagator, W3CTraceContextPropagator } from "@opentelemetry/core"
import { B3InjectEncoding, B3Propagator } from "@opentelemetry/propagator-b3"
import type { B3Emission } from "./config.js"
import { W3CTraceState } from "./tracestate.js"

/**
 * A propagator whose extraction and injection differ: it reads every format codeq accepts and
 * writes W3C plus the B3 encodings asked for. When a request carries both B3 and W3C headers,
 * the W3C `traceparent` decides the parent.
 */
export class CodeqPropagator implements TextMapPropagator {
  private readonly injectors: ReadonlyArray<TextMapPropagator>
  /** Applied in order, each on the previous result, so the last format present wins. */
  private readonly extractors: ReadonlyArray<TextMapPropagator>

  constructor(b3: B3Emission = { single: false, multi: false }) {
    const traceContext = new W3CTraceContextPropagator()
    const baggage = new W3CBaggagePropagator()
    this.injectors = [
      traceContext,
      baggage,
      ...(b3.single ? [new B3Propagator({ injectEncoding: B3InjectEncoding.SINGLE_HEADER })] : []),
      ...(b3.multi ? [new B3Propagator({ injectEncoding: B3InjectEncoding.MULTI_HEADER })] : [])
    ]
    // B3Propagator extracts both the single and the multi-header form whatever it injects.
    this.extractors = [new B3Propagator(), traceContext, baggage]
  }

  inject(ctx: Context, carrier: unknown, setter: TextMapSetter): void {
    for (const injector of this.injectors) injector.inject(ctx, carrier, setter)
  }

  extract(ctx: Context, carrier: unknown, getter: TextMapGetter): Context {
    const extracted = this.extractors.reduce((current, extractor) => extractor.extract(current, carrier, getter), ctx)
    // OpenTelemetry's TraceState drops Level 2 keys (`foo@`): read the header again, whole.
    const span = trace.getSpanContext(extracted)
    const raw = getter.get(carrier, "tracestate")
    if (span === undefined || raw === undefined || span === trace.getSpanContext(ctx)) return extracted
    return trace.setSpanContext(extracted, { ...span, traceState: W3CTraceState.parse(Array.isArray(raw) ? raw.join(",") : raw) })
  }

  fields(): string[] {
    const all = new Set<string>()
    for (const propagator of [...this.injectors, ...this.extractors]) for (const field of propagator.fields()) all.add(field)
    return [...all]
  }
}

/** Set when codeq's own context manager became the global one. */
let ownManager = false

/**
 * Installs codeq's propagator as the global one, replacing any earlier, and the
 * AsyncLocalStorage context manager unless one is already installed (replacing a live context
 * manager would orphan the contexts of work in flight).
 */
export const installPropagation = (b3: B3Emission): CodeqPropagator => {
  const propagator = new CodeqPropagator(b3)
  propagation.disable()
  propagation.setGlobalPropagator(propagator)
  const manager = new AsyncLocalStorageContextManager()
  if (context.setGlobalContextManager(manager.enable())) ownManager = true
  else manager.disable()
  return propagator
}

/**
 * Whether the global context manager is the one codeq installed, rather than an embedding
 * application's (registered first, along with whatever instrumentation it loads).
 */
export const contextManagerIsCodeqs = (): boolean => ownManager

/** Inbound headers, e.g. Node's `IncomingHttpHeaders` (repeats as arrays). Names match in any case. */
export type InboundHeaders = Readonly<Record<string, string | ReadonlyArray<string> | undefined>>

const inboundGetter: TextMapGetter<InboundHeaders> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => {
    // Propagators ask in lower case; Node lower-cases request headers, other carriers may not.
    let value = carrier[key]
    if (value === undefined) {
      const wanted = key.toLowerCase()
      const name = Object.keys(carrier).find((candidate) => candidate.toLowerCase() === wanted)
      value = name === undefined ? undefined : carrier[name]
    }
    return typeof value === "string" ? value : value?.[0]
  }
}

/** The context an inbound request's trace headers describe (W3C or B3), on top of `base`. */
export const contextFromHeaders = (headers: InboundHeaders, base: Context = ROOT_CONTEXT): Context =>
  propagation.extract(base, headers, inboundGetter)

/** Used when no global propagator is installed (codeq used as a library without setupTracing). */
const FALLBACK = new CodeqPropagator()

/**
 * The headers an outbound request carries to continue the trace of `ctx`: through the installed
 * propagator (W3C and baggage, plus B3 as `OTEL_PROPAGATORS` asks), or W3C and baggage when none is.
 */
export const traceHeadersOf = (ctx: Context = context.active()): Record<string, string> => {
  const headers: Record<string, string> = {}
  if (propagation.fields().length > 0) propagation.inject(ctx, headers)
  else FALLBACK.inject(ctx, headers, defaultTextMapSetter)
  return headers
}

const baggageCodec = new W3CBaggagePropagator()

/** The W3C `baggage` header value of `ctx`'s baggage; undefined when it has none. */
export const baggageHeaderOf = (ctx: Context): string | undefined => {
  const carrier: Record<string, string> = {}
  baggageCodec.inject(ctx, carrier, defaultTextMapSetter)
  return carrier.baggage === undefined || carrier.baggage === "" ? undefined : carrier.baggage
}

/** `ctx` with the baggage a `baggage` header value describes. */
export const withBaggageHeader = (ctx: Context, header: string | undefined): Context =>
  header === undefined ? ctx : baggageCodec.extract(ctx, { baggage: header }, defaultTextMapGetter)
