/**
 * The configuration's one list of keys (src/config/configFile.ts) held to the README's table, to the
 * variables the Effect Configs read, and the file loader's rules: unknown keys refused, the
 * environment over the file, bad values named with key, value and rule, secrets masked.
 */
import { mkdtemp, readFile, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { BrokerConfig } from "../src/config/config.js"
import { CONFIG_KEYS, ConfigurationError, effectiveVariables, loadConfig, printableConfig, readConfigFile } from "../src/config/configFile.js"
import { HttpConfig } from "../src/http/config.js"

const readmeKeys = async (): Promise<Array<{ key: string; env: string }>> => {
  const readme = await readFile(new URL("../README.md", import.meta.url), "utf8")
  const at = readme.indexOf("<!-- codeq:config-keys -->")
  expect(at, "README.md has the <!-- codeq:config-keys --> table").toBeGreaterThanOrEqual(0)
  const rows = readme
    .slice(at)
    .split("\n")
    .slice(3)
  const out: Array<{ key: string; env: string }> = []
  for (const row of rows) {
    const cells = /^\| `([A-Za-z]+)` \| `([A-Z_]+)` \|/.exec(row)
    if (cells === null) break
    out.push({ key: cells[1] ?? "", env: cells[2] ?? "" })
  }
  return out
}

const variablesReadByCode = async (): Promise<Set<string>> => {
  const names = new Set<string>()
  for (const file of ["../src/config/config.ts", "../src/http/config.ts"]) {
    const text = await readFile(new URL(file, import.meta.url), "utf8")
    for (const m of text.matchAll(/Config\.(?:string|integer|number|boolean|port|redacted|url|duration)\("([A-Z_]+)"/g)) names.add(m[1] ?? "")
  }
  return names
}

describe("configuration keys", () => {
  it("lists in the README exactly the keys of the registry, with the same variables, in order", async () => {
    expect(await readmeKeys()).toEqual(CONFIG_KEYS.map(({ key, env }) => ({ key, env })))
  })

  it("names in the registry exactly the variables the configuration reads", async () => {
    expect(new Set(CONFIG_KEYS.map((k) => k.env))).toEqual(await variablesReadByCode())
  })
})

describe("the config file", () => {
  const file = async (text: string) => {
    const path = join(await mkdtemp(join(tmpdir(), "codeq-cfg-")), "codeq.yaml")
    await writeFile(path, text)
    return path
  }

  it("reads codeQ's key names, with the environment winning and lists as JSON", async () => {
    const path = await file("natsUrl: nats://a:4222\nreplicas: 3\ntracingEnabled: true\nhttpStaticTokens:\n  - { token: aaaaaaaaaaaaaaaa, tenant: acme }\n")
    const vars = await effectiveVariables({ CODEQ_CONFIG: path, CODEQ_REPLICAS: "1" })
    expect(vars.get("NATS_URL")).toBe("nats://a:4222")
    expect(vars.get("CODEQ_REPLICAS")).toBe("1")
    const broker = await loadConfig(BrokerConfig, vars)
    expect(broker).toMatchObject({ natsUrl: "nats://a:4222", streams: { replicas: 1 }, tracing: { tracingEnabled: true } })
    const http = await loadConfig(HttpConfig, vars)
    expect(http.port).toBe(8080)
  })

  it("refuses an unknown key, YAML that is not a mapping, and a missing file, in one line each", async () => {
    await expect(readConfigFile(await file("replicaz: 3\n"))).rejects.toThrow(/unknown key replicaz/)
    await expect(readConfigFile(await file("- a\n- b\n"))).rejects.toThrow(/must be a mapping/)
    await expect(readConfigFile("/nonexistent/codeq.yaml")).rejects.toThrow(/cannot be read: ENOENT/)
  })

  it("names the key, the value and the rule of a bad value, masking secrets", async () => {
    const bad = async (env: Record<string, string>, config: Parameters<typeof loadConfig>[0]) =>
      loadConfig(config, await effectiveVariables(env)).then(
        () => "accepted",
        (error: unknown) => (error instanceof ConfigurationError ? error.message : String(error))
      )
    expect(await bad({ CODEQ_TRACING_SAMPLE_RATIO: "x" }, BrokerConfig)).toBe('config: tracingSampleRatio (CODEQ_TRACING_SAMPLE_RATIO) = "x": Expected a number value but received "x"')
    expect(await bad({ CODEQ_WEBHOOK_CONNECT_TIMEOUT_MS: "5" }, BrokerConfig)).toBe('config: webhookConnectTimeoutMs (CODEQ_WEBHOOK_CONNECT_TIMEOUT_MS) = "5": must be a number from 100 to 120000')
    expect(await bad({ CODEQ_HEAP_GROWTH_PERCENT: "1001" }, BrokerConfig)).toBe('config: heapGrowthPercent (CODEQ_HEAP_GROWTH_PERCENT) = "1001": must be a number from 0 to 1000')
    expect(await bad({ CODEQ_HEAP_GROWTH_PERCENT: "12.5" }, BrokerConfig)).toMatch(/^config: heapGrowthPercent \(CODEQ_HEAP_GROWTH_PERCENT\) = "12.5": /)
    const tokens = await bad({ CODEQ_HTTP_STATIC_TOKENS: '[{"token":"short","tenant":"acme"}]' }, HttpConfig)
    expect(tokens).toMatch(/^config: httpStaticTokens \(CODEQ_HTTP_STATIC_TOKENS\) = "\[secret\]": must be a JSON array/)
    expect(tokens).not.toContain("short")
  })

  it("prints every key, secrets masked", async () => {
    const rows = printableConfig(new Map([["CODEQ_WEBHOOK_HMAC_SECRET", "hunter2"], ["NATS_URL", "nats://x:1"]]))
    expect(rows).toHaveLength(CONFIG_KEYS.length)
    expect(rows.find((r) => r.key === "webhookHmacSecret")?.value).toBe("[secret]")
    expect(rows.find((r) => r.key === "natsUrl")?.value).toBe("nats://x:1")
    expect(JSON.stringify(rows)).not.toContain("hunter2")
  })
})
