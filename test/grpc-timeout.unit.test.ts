/** The `grpc-timeout` header of the OTLP plaintext transport: at most 8 digits and a unit. */
import { describe, expect, it } from "vitest"
import { grpcTimeout } from "../src/tracing/grpcTransport.js"

describe("grpc-timeout", () => {
  it("gives milliseconds up to 8 digits, whole seconds (rounded up) beyond", () => {
    expect(grpcTimeout(1)).toBe("1m")
    expect(grpcTimeout(10_000)).toBe("10000m")
    expect(grpcTimeout(99_999_999)).toBe("99999999m")
    expect(grpcTimeout(100_000_000)).toBe("100000S")
    expect(grpcTimeout(100_000_001)).toBe("100001S")
    // The longest deadline the transport allows (Node's timer limit) still fits in 8 digits.
    expect(grpcTimeout(2 ** 31 - 1)).toBe("2147484S")
  })
})
