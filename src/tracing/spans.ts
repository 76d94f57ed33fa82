/**
 * Opening the span that performs one transition. Each span writes exactly one event and the
 * event's headers carry that span's context, its parent span id and its start (DESIGN §2).
 *
 * Span ids must exist even when nothing is exported: with no SDK registered the OpenTelemetry API
 * hands out non-recording spans that reuse the parent's ids, which would make every event of a
 * task claim the same span. So when the global provider is the API's no-op, spans come from a
 * private SDK provider that samples nothing new (parent-based, root always off) and exports nothing.
 */
import { ProxyTracerProvider, trace, type Attributes, type Context, type Span, type Tracer, type TracerProvider } from "@opentelemetry/api"
import { AlwaysOffSampler, BasicTracerProvider, ParentBasedSampler } from "@opentelemetry/sdk-trace-base"
import type { EventTrace } from "../domain/events.js"
import { eventTraceOf, spanStartNow } from "./codec.js"

let silentProvider: TracerProvider | undefined

const idOnlyProvider = (): TracerProvider =>
  (silentProvider ??= new BasicTracerProvider({ sampler: new ParentBasedSampler({ root: new AlwaysOffSampler() }) }))

/** The provider spans come from: the given one, the registered global one, or the silent one. */
export const resolveProvider = (provider?: TracerProvider): TracerProvider => {
  if (provider !== undefined) return provider
  const global = trace.getTracerProvider()
  if (global instanceof ProxyTracerProvider && global.getDelegateTracer("codeq") === undefined) return idOnlyProvider()
  return global
}

/** Tracers by name, resolved once per Telemetry. */
export class Telemetry {
  private readonly provider: TracerProvider
  private readonly tracers = new Map<string, Tracer>()

  constructor(provider?: TracerProvider) {
    this.provider = resolveProvider(provider)
  }

  tracer(name: string): Tracer {
    let tracer = this.tracers.get(name)
    if (tracer === undefined) {
      tracer = this.provider.getTracer(name)
      this.tracers.set(name, tracer)
    }
    return tracer
  }

  /** Opens a span for one transition, parented on `parent`, and the trace its event will carry. */
  startTransition(tracerName: string, spanName: string, parent: Context, attributes: Attributes): TransitionSpan {
    const start = spanStartNow()
    const span = this.tracer(tracerName).startSpan(spanName, { attributes, startTime: start.hr }, parent)
    const parentCtx = trace.getSpanContext(parent)
    return { span, context: trace.setSpan(parent, span), trace: eventTraceOf(span.spanContext(), parentCtx, start) }
  }
}

export interface TransitionSpan {
  readonly span: Span
  /** `parent` with this span set: the parent for work the transition causes. */
  readonly context: Context
  /** The trace headers of the event this span writes. */
  readonly trace: EventTrace
}
