/**
 * The tracing configuration (DESIGN §6): the five keys and their defaults, the OTEL_* variables
 * that win over them, endpoints reduced to host:port, and errors that name the offending key.
 */
import { describe, expect, it } from "vitest"
import { resolveTracingConfig, sanitizeEndpoint, TracingConfigError, type TracingConfigInput, type TracingEnv } from "../src/tracing/config.js"

const resolve = (input: TracingConfigInput = {}, env: TracingEnv = {}) => resolveTracingConfig(input, env)

/** The error a resolution throws, for assertions on its key and message. */
const errorOf = (run: () => unknown): TracingConfigError => {
  try {
    run()
  } catch (error) {
    if (error instanceof TracingConfigError) return error
    throw error
  }
  throw new Error("expected a TracingConfigError")
}

describe("defaults", () => {
  it("resolves an empty config to tracing off, service codeq, localhost:4317 over TLS, everything sampled", () => {
    expect(resolve()).toEqual({
      enabled: false,
      serviceName: "codeq",
      endpoint: "localhost:4317",
      insecure: false,
      sampleRatio: 1,
      b3: { single: false, multi: false },
      unknownPropagators: []
    })
  })

  it("takes each key from the config when the environment is silent", () => {
    const config = resolve({
      tracingEnabled: true,
      tracingServiceName: "broker-eu",
      tracingOtlpEndpoint: "otel-collector:4317",
      tracingOtlpInsecure: true,
      tracingSampleRatio: 0.1
    })
    expect(config).toMatchObject({ enabled: true, serviceName: "broker-eu", endpoint: "otel-collector:4317", insecure: true, sampleRatio: 0.1 })
  })

  it("accepts the keys as strings, as a YAML or env loader may hand them over", () => {
    const config = resolve({ tracingEnabled: "TRUE", tracingOtlpInsecure: " false ", tracingSampleRatio: "0.25" })
    expect(config).toMatchObject({ enabled: true, insecure: false, sampleRatio: 0.25 })
  })
})

describe("environment precedence", () => {
  it("lets OTEL_SERVICE_NAME win over tracingServiceName", () => {
    expect(resolve({ tracingServiceName: "from-file" }, { OTEL_SERVICE_NAME: "from-env" }).serviceName).toBe("from-env")
  })

  it("ignores blank environment variables", () => {
    const config = resolve({ tracingServiceName: "from-file", tracingOtlpEndpoint: "file:4317" }, { OTEL_SERVICE_NAME: "  ", OTEL_EXPORTER_OTLP_ENDPOINT: "" })
    expect(config).toMatchObject({ serviceName: "from-file", endpoint: "file:4317" })
  })

  it("lets OTEL_EXPORTER_OTLP_ENDPOINT win over tracingOtlpEndpoint, and the traces-specific variable win over both", () => {
    expect(resolve({ tracingOtlpEndpoint: "file:4317" }, { OTEL_EXPORTER_OTLP_ENDPOINT: "env:4317" }).endpoint).toBe("env:4317")
    const both = { OTEL_EXPORTER_OTLP_ENDPOINT: "env:4317", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "traces:4317" }
    expect(resolve({ tracingOtlpEndpoint: "file:4317" }, both).endpoint).toBe("traces:4317")
  })

  it("lets OTEL_EXPORTER_OTLP_INSECURE win over tracingOtlpInsecure in both directions", () => {
    expect(resolve({ tracingOtlpInsecure: false }, { OTEL_EXPORTER_OTLP_INSECURE: "true" }).insecure).toBe(true)
    expect(resolve({ tracingOtlpInsecure: true }, { OTEL_EXPORTER_OTLP_INSECURE: "FALSE" }).insecure).toBe(false)
  })

  it("infers plaintext from an http:// endpoint only when insecure is set nowhere", () => {
    expect(resolve({ tracingOtlpEndpoint: "http://jaeger:4317" }).insecure).toBe(true)
    expect(resolve({ tracingOtlpEndpoint: "https://collector:4317" }).insecure).toBe(false)
    expect(resolve({}, { OTEL_EXPORTER_OTLP_ENDPOINT: "http://jaeger:4317" }).insecure).toBe(true)
    expect(resolve({ tracingOtlpEndpoint: "http://jaeger:4317", tracingOtlpInsecure: false }).insecure).toBe(false)
  })
})

describe("sanitizeEndpoint", () => {
  it.each([
    ["http://collector:4317/v1/traces", "collector:4317"],
    ["https://collector.example.com:443/", "collector.example.com:443"],
    ["http://collector:80", "collector:80"],
    ["http://collector", "collector:4317"],
    ["collector", "collector:4317"],
    ["collector:4317/", "collector:4317"],
    ["  localhost:4317  ", "localhost:4317"],
    ["http://user:secret@collector:4318/v1/traces?x=1", "collector:4318"],
    ["[::1]:4317", "[::1]:4317"],
    ["http://[::1]/v1/traces", "[::1]:4317"],
    ["10.0.0.7:55680", "10.0.0.7:55680"]
  ])("reduces %s to %s", (raw, expected) => {
    expect(sanitizeEndpoint(raw).hostPort).toBe(expected)
  })

  it.each(["unix:///var/run/otel.sock", "collector:99999", "collector:0", "http://", "collector:port", "a b:4317"])("refuses %s", (raw) => {
    expect(errorOf(() => sanitizeEndpoint(raw)).key).toBe("tracingOtlpEndpoint")
  })

  it("names the environment variable when the endpoint came from it", () => {
    const error = errorOf(() => resolve({}, { OTEL_EXPORTER_OTLP_ENDPOINT: "ftp://collector" }))
    expect(error.key).toBe("OTEL_EXPORTER_OTLP_ENDPOINT")
    expect(error.message).toContain("OTEL_EXPORTER_OTLP_ENDPOINT")
  })
})

describe("validation", () => {
  it.each([0, 0.5, 1, "0", "1.0", ".5", "1e-2"])("accepts the sample ratio %s", (ratio) => {
    expect(resolve({ tracingSampleRatio: ratio }).sampleRatio).toBe(Number(ratio))
  })

  it.each([1.5, -0.1, Number.NaN, Number.POSITIVE_INFINITY, "abc", "", "0.5x", "50%"])("refuses the sample ratio %s naming the key", (ratio) => {
    const error = errorOf(() => resolve({ tracingSampleRatio: ratio }))
    expect(error._tag).toBe("TracingConfigError")
    expect(error.key).toBe("tracingSampleRatio")
    expect(error.message).toMatch(/^tracingSampleRatio must be a number between 0 and 1/)
  })

  it("refuses a bad sample ratio even when tracing is disabled, so the mistake shows before it matters", () => {
    expect(errorOf(() => resolve({ tracingEnabled: false, tracingSampleRatio: 2 })).key).toBe("tracingSampleRatio")
  })

  it("refuses booleans it cannot read, naming the key or variable", () => {
    expect(errorOf(() => resolve({ tracingEnabled: "yes" })).key).toBe("tracingEnabled")
    expect(errorOf(() => resolve({ tracingOtlpInsecure: "maybe" })).key).toBe("tracingOtlpInsecure")
    expect(errorOf(() => resolve({}, { OTEL_EXPORTER_OTLP_INSECURE: "on" })).key).toBe("OTEL_EXPORTER_OTLP_INSECURE")
  })
})

describe("OTEL_PROPAGATORS", () => {
  it.each([
    ["tracecontext,baggage", { single: false, multi: false }],
    ["tracecontext,b3", { single: true, multi: false }],
    ["tracecontext, b3multi", { single: false, multi: true }],
    [" B3 , B3MULTI ", { single: true, multi: true }]
  ])("reads %j as B3 emission %j", (value, b3) => {
    expect(resolve({}, { OTEL_PROPAGATORS: value }).b3).toEqual(b3)
  })

  it("lists the propagators codeq does not implement", () => {
    expect(resolve({}, { OTEL_PROPAGATORS: "tracecontext,jaeger,xray" }).unknownPropagators).toEqual(["jaeger", "xray"])
  })
})
