/**
 * The container setup checked where no Docker engine runs: compose.yaml's structure (the NATS
 * cluster, Jaeger, the broker and the example worker, their ports, start order, health checks
 * and environment), the Dockerfile's stages, and .dockerignore. Environment names and values are
 * checked against the code itself: names scanned from the sources, values decoded with the
 * broker's own Config, so a renamed variable or a bad value breaks this test. With a `docker
 * compose` client present, `docker compose config` validates the file as well.
 */
import { spawnSync } from "node:child_process"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { isBuiltin } from "node:module"
import { dirname, join, relative, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { ConfigProvider, Effect, Redacted } from "effect"
import ts from "typescript"
import { describe, expect, it } from "vitest"
import { parse } from "yaml"
import { BrokerConfig } from "../src/config/config.js"
import { TENANT_PATTERN } from "../src/domain/validation.js"
import { HttpConfig } from "../src/http/config.js"
import { resolveTracingConfig } from "../src/tracing/config.js"

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const read = (path: string) => readFileSync(join(root, path), "utf8")

type Port = string | number | { readonly target: number | string; readonly published?: number | string }
interface Service {
  readonly image?: string
  readonly build?: unknown
  readonly command?: ReadonlyArray<string> | string
  readonly environment?: Readonly<Record<string, unknown>> | ReadonlyArray<string>
  readonly ports?: ReadonlyArray<Port>
  readonly volumes?: ReadonlyArray<string | { readonly source?: string; readonly target: string }>
  readonly depends_on?: ReadonlyArray<string> | Readonly<Record<string, { readonly condition?: string }>>
  readonly healthcheck?: { readonly test?: ReadonlyArray<string> | string; readonly disable?: boolean }
}
const compose = parse(read("compose.yaml")) as { services: Record<string, Service>; volumes?: Record<string, unknown> }
const services = compose.services
const service = (name: string): Service => {
  const found = services[name]
  if (found === undefined) throw new Error(`compose.yaml has no service ${name}`)
  return found
}
const NATS = ["nats-1", "nats-2", "nats-3"]

const argvOf = (s: Service): ReadonlyArray<string> => (typeof s.command === "string" ? s.command.split(/\s+/) : (s.command ?? []))
/** A flag's value in `--name value`, `--name=value` or `-n value` form (the first alias that is present). */
const flag = (argv: ReadonlyArray<string>, ...names: ReadonlyArray<string>): string | undefined => {
  for (const [i, arg] of argv.entries()) {
    for (const name of names) {
      if (arg === name) return argv[i + 1]
      if (arg.startsWith(`${name}=`)) return arg.slice(name.length + 1)
    }
  }
  return undefined
}
const envOf = (s: Service): Record<string, unknown> =>
  Array.isArray(s.environment)
    ? Object.fromEntries((s.environment as ReadonlyArray<string>).map((entry) => [entry.split("=")[0], entry.split("=").slice(1).join("=")]))
    : { ...(s.environment ?? {}) }
const stringEnv = (s: Service): Record<string, string> => Object.fromEntries(Object.entries(envOf(s)).map(([k, v]) => [k, String(v)]))
/** Published ports as host → container pairs (a bare container port has no fixed host port). */
const published = (s: Service) =>
  (s.ports ?? []).map((port) => {
    if (typeof port === "object") return { host: port.published === undefined ? undefined : Number(port.published), container: Number(port.target) }
    const parts = String(port).replace(/\/(tcp|udp)$/, "").split(":")
    return { host: parts.length > 1 ? Number(parts[parts.length - 2]) : undefined, container: Number(parts[parts.length - 1]) }
  })
const healthTest = (s: Service): ReadonlyArray<string> =>
  s.healthcheck?.disable === true ? [] : typeof s.healthcheck?.test === "string" ? ["CMD-SHELL", s.healthcheck.test] : (s.healthcheck?.test ?? [])
const urlIn = (argv: ReadonlyArray<string>): URL => {
  const match = argv.join(" ").match(/https?:\/\/[^\s'"`)]+/)
  if (match === null) throw new Error(`no URL in ${argv.join(" ")}`)
  return new URL(match[0])
}
const decode = <A>(config: Effect.Effect<A, unknown>, env: Record<string, string>): A =>
  Effect.runSync(Effect.withConfigProvider(config, ConfigProvider.fromMap(new Map(Object.entries(env)))))

/** Files under a directory, recursively. */
const walk = (dir: string): ReadonlyArray<string> =>
  readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? walk(join(dir, entry.name)) : [join(dir, entry.name)]))
const sources = walk("src").filter((file) => file.endsWith(".ts") && !/^src\/testing\//.test(file))
/** Every environment variable the broker's code reads: `Config.xxx("NAME"` and `process.env.NAME`. */
const variablesTheCodeReads = new Set(
  sources.flatMap((file) => [...read(file).matchAll(/Config\.\w+\(\s*"([A-Z][A-Z0-9_]*)"|process\.env\.([A-Z][A-Z0-9_]*)/g)].map((m) => m[1] ?? m[2] ?? ""))
)
/** The HTTP routes the server registers. */
const routes = new Set(walk("src/http").filter((file) => file.endsWith("Routes.ts")).flatMap((file) => [...read(file).matchAll(/path: "([^"]+)"/g)].map((m) => m[1])))

describe("compose.yaml", () => {
  it("has three NATS nodes, Jaeger, the broker and the example worker, and nothing else", () => {
    expect(Object.keys(services).sort()).toEqual([...NATS, "broker", "jaeger", "worker"].sort())
  })

  it("runs each NATS node (≥ 2.10) with JetStream, its own server name and a store on its own declared volume", () => {
    const stores = NATS.map((name) => {
      const node = service(name)
      const [, major, minor] = node.image?.match(/^nats:(\d+)\.(\d+)/) ?? []
      expect(Number(major) * 100 + Number(minor), `${name} image ${node.image}`).toBeGreaterThanOrEqual(210)
      const argv = argvOf(node)
      expect(argv.includes("-js") || argv.includes("--jetstream"), `${name} enables JetStream`).toBe(true)
      expect(flag(argv, "--server_name", "--name", "-n")).toBe(name)
      const storeDir = flag(argv, "--store_dir", "-sd")
      const mount = (node.volumes ?? []).map((v) => (typeof v === "string" ? { source: v.split(":")[0], target: v.split(":")[1] } : v)).find((v) => v.target === storeDir)
      expect(mount?.source, `${name} keeps ${storeDir} on a named volume`).toMatch(/^[a-z0-9][\w.-]*$/)
      expect(Object.keys(compose.volumes ?? {})).toContain(mount?.source)
      return mount?.source
    })
    expect(new Set(stores).size).toBe(NATS.length)
  })

  it("joins the NATS nodes into one cluster: the same name, each routing to the two others on their cluster port", () => {
    const clusterPort = (name: string) => new URL(flag(argvOf(service(name)), "--cluster", "--cluster_listen") ?? "missing:").port
    const names = new Set(NATS.map((name) => flag(argvOf(service(name)), "--cluster_name")))
    expect([...names]).toEqual(["codeq"])
    for (const name of NATS) {
      const routes = (flag(argvOf(service(name)), "--routes") ?? "").split(",").map((route) => new URL(route)).map((url) => `${url.hostname}:${url.port}`)
      const others = NATS.filter((other) => other !== name).map((other) => `${other}:${clusterPort(other)}`)
      expect(routes.sort(), `${name} routes`).toEqual(others.sort())
    }
  })

  it("health-checks each NATS node on its monitoring port, healthy once JetStream is enabled", () => {
    for (const name of NATS) {
      const monitor = flag(argvOf(service(name)), "-m", "--http_port")
      const test = healthTest(service(name))
      expect(test.slice(0, 2), name).toEqual(["CMD", "wget"])
      const url = urlIn(test)
      expect(`${url.port} ${url.pathname}${url.search}`, name).toBe(`${monitor} /healthz?js-enabled-only=true`)
    }
  })

  it("publishes a NATS client port, Jaeger's OTLP gRPC port and UI, and the broker's HTTP port on the same host ports", () => {
    expect(NATS.flatMap((name) => published(service(name)))).toContainEqual({ host: 4222, container: 4222 })
    expect(published(service("jaeger"))).toEqual(expect.arrayContaining([{ host: 4317, container: 4317 }, { host: 16686, container: 16686 }]))
    expect(service("jaeger").image).toMatch(/^jaegertracing\/all-in-one:/)
    expect(stringEnv(service("jaeger")).COLLECTOR_OTLP_ENABLED).toBe("true")
    const httpPort = Number(stringEnv(service("broker")).CODEQ_HTTP_PORT)
    expect(httpPort).toBe(8080)
    expect(published(service("broker"))).toContainEqual({ host: 8080, container: httpPort })
  })

  it("starts the broker once every NATS node is healthy and the worker once the broker is healthy", () => {
    const conditions = (s: Service) => (Array.isArray(s.depends_on) ? {} : ((s.depends_on ?? {}) as Record<string, { condition?: string }>))
    for (const name of NATS) expect(conditions(service("broker"))[name]?.condition, name).toBe("service_healthy")
    expect(conditions(service("worker")).broker?.condition).toBe("service_healthy")
    // A service_healthy dependency on a service without a (working) health check never starts.
    for (const [name, s] of Object.entries(services))
      for (const [dependency, { condition }] of Object.entries(conditions(s)))
        if (condition === "service_healthy") expect(healthTest(service(dependency)).length, `${name} waits for ${dependency}'s health`).toBeGreaterThan(1)
  })

  it("health-checks the broker with Node's fetch on its HTTP port, on a route the server has", () => {
    const test = healthTest(service("broker"))
    expect(test.slice(0, 2)).toEqual(["CMD", "node"]) // the slim image has no curl or wget
    const url = urlIn(test)
    expect(Number(url.port)).toBe(Number(stringEnv(service("broker")).CODEQ_HTTP_PORT))
    expect(routes).toContain(url.pathname)
  })

  it("runs `codeq worker` for the tokens' tenant with the image's HTTP health check turned off", () => {
    const worker = service("worker")
    const argv = argvOf(worker)
    expect(argv[0]).toBe("worker")
    expect(flag(argv, "--command")).toMatch(/^[A-Za-z0-9_-]{1,64}$/)
    expect(flag(argv, "--concurrency")).toBe("8")
    const tokens = Redacted.value(decode(HttpConfig, stringEnv(service("broker"))).staticTokens)
    expect(new Set(tokens.map((token) => token.tenant))).toEqual(new Set([flag(argv, "--tenant")]))
    expect(worker.healthcheck?.disable).toBe(true)
    // Built from the same Dockerfile as the broker, under the same image name.
    expect(worker.build).toEqual(service("broker").build)
    expect(worker.image).toBe(service("broker").image)
  })

  it("gives the broker and the worker only variables the code reads, as strings", () => {
    expect(variablesTheCodeReads).toContain("NATS_URL")
    expect(variablesTheCodeReads).toContain("CODEQ_HTTP_STATIC_TOKENS")
    for (const name of ["broker", "worker"])
      for (const [key, value] of Object.entries(envOf(service(name)))) {
        expect(variablesTheCodeReads, `${name}: ${key}`).toContain(key)
        expect(typeof value, `${name}: ${key} is quoted`).toBe("string")
      }
  })

  it("configures the broker, by its own Config, for the cluster at 3 replicas and for tracing to Jaeger in plaintext", () => {
    const env = stringEnv(service("broker"))
    const config = decode(BrokerConfig, env)
    expect(config.streams.replicas).toBe(3)
    const servers = config.natsUrl.split(",").map((server) => new URL(server))
    const clientPort = (name: string) => flag(argvOf(service(name)), "-p", "--port") ?? "4222"
    expect(servers.map((url) => `${url.hostname}:${url.port}`).sort()).toEqual(NATS.map((name) => `${name}:${clientPort(name)}`).sort())
    const tracing = resolveTracingConfig(config.tracing, env)
    expect(tracing).toMatchObject({ enabled: true, endpoint: "jaeger:4317", insecure: true })
    expect(decode(HttpConfig, env).port).toBe(8080)
  })

  it("gives the broker a producer, a worker (with a subject) and an admin token for one valid tenant", () => {
    const tokens = Redacted.value(decode(HttpConfig, stringEnv(service("broker"))).staticTokens)
    expect(tokens.map((token) => token.role).sort()).toEqual(["admin", "producer", "worker"])
    expect(new Set(tokens.map((token) => token.token)).size).toBe(tokens.length)
    expect(tokens.find((token) => token.role === "worker")?.subject).toBeTruthy()
    for (const token of tokens) expect(token.tenant).toMatch(TENANT_PATTERN)
  })

  it("points the worker at the same NATS servers and Jaeger as the broker, under its own service name", () => {
    const brokerEnv = stringEnv(service("broker"))
    const workerEnv = stringEnv(service("worker"))
    const broker = decode(BrokerConfig, brokerEnv)
    const worker = decode(BrokerConfig, workerEnv)
    expect(worker.natsUrl).toBe(broker.natsUrl)
    const [brokerTracing, workerTracing] = [resolveTracingConfig(broker.tracing, brokerEnv), resolveTracingConfig(worker.tracing, workerEnv)]
    expect(workerTracing).toMatchObject({ enabled: true, endpoint: brokerTracing.endpoint, insecure: true })
    expect(workerTracing.serviceName).not.toBe(brokerTracing.serviceName)
  })

  const composeCli = spawnSync("docker", ["compose", "version"], { encoding: "utf8" }).status === 0
  it.skipIf(!composeCli)("is accepted by `docker compose config`", () => {
    const run = spawnSync("docker", ["compose", "-f", join(root, "compose.yaml"), "config", "--quiet"], { encoding: "utf8" })
    expect(run.status, run.stderr).toBe(0)
  })
})

interface Instruction {
  readonly op: string
  readonly args: string
}
/** The Dockerfile's stages: continuation lines joined, comments dropped, global ARG defaults substituted. */
const stages = (() => {
  const lines = read("Dockerfile").replace(/\\\n/g, " ").split("\n").map((line) => line.trim()).filter((line) => line !== "" && !line.startsWith("#"))
  const globals = new Map<string, string>()
  const result: Array<{ name: string; base: string; instructions: Array<Instruction> }> = []
  for (const line of lines) {
    const [op = "", ...rest] = line.split(/\s+/)
    const args = rest.join(" ").replace(/\$\{(\w+)\}/g, (whole, name: string) => (result.length === 0 ? whole : (globals.get(name) ?? whole)))
    if (op.toUpperCase() === "ARG" && result.length === 0) {
      const [name = "", value = ""] = args.split("=")
      globals.set(name, value)
    } else if (op.toUpperCase() === "FROM") {
      const [base = "", , name = String(result.length)] = args.split(/\s+/)
      result.push({ name, base: base.replace(/\$\{(\w+)\}/g, (_, arg: string) => globals.get(arg) ?? ""), instructions: [] })
    } else result.at(-1)?.instructions.push({ op: op.toUpperCase(), args })
  }
  return result
})()
const stage = (name: string) => stages.find((s) => s.name === name) ?? expect.fail(`no stage ${name}`)
const runs = (s: (typeof stages)[number]) => s.instructions.filter((i) => i.op === "RUN").map((i) => i.args)
const copies = (s: (typeof stages)[number]) =>
  s.instructions
    .filter((i) => i.op === "COPY")
    .map((i) => {
      const words = i.args.split(/\s+/)
      const from = words.find((w) => w.startsWith("--from="))?.slice("--from=".length)
      const paths = words.filter((w) => !w.startsWith("--"))
      return { from, sources: paths.slice(0, -1), dest: paths.at(-1) ?? "" }
    })
const only = (s: (typeof stages)[number], op: string) => s.instructions.filter((i) => i.op === op).map((i) => i.args)
const runtime = stages.at(-1) ?? expect.fail("no stage")

/** tsconfig.build.json as the compiler reads it (extends resolved): where the CLI's entry is emitted. */
const build = ts.getParsedCommandLineOfConfigFile(join(root, "tsconfig.build.json"), undefined, {
  ...ts.sys,
  onUnRecoverableConfigFileDiagnostic: (diagnostic) => expect.fail(ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n"))
})
const entrySource = join(root, "src/cli/main.ts")
const emittedEntry = () => {
  const outDir = build?.options.outDir ?? expect.fail("tsconfig.build.json has no outDir")
  return relative(root, join(outDir, relative(build?.options.rootDir ?? root, entrySource))).replace(/\.ts$/, ".js")
}

describe("Dockerfile", () => {
  it("builds on Node 20 slim: npm ci, then npm run build with every file the compiler reaches copied in", () => {
    for (const s of stages) expect(s.base, s.name).toBe("node:20-bookworm-slim")
    const builder = stage("build")
    expect(runs(builder)).toEqual(["npm ci --no-audit --no-fund", "npm run build"])
    expect(JSON.parse(read("package.json")).scripts.build).toMatch(/tsc -p tsconfig\.build\.json/)
    const copied = copies(builder).flatMap((c) => c.sources)
    for (const path of ["tsconfig.json", "tsconfig.build.json", "package.json", "package-lock.json"]) expect(copied, path).toContain(path)
    // The compiler reads every relative import, type-only and dynamic ones too, even outside `include`.
    const reached = new Set<string>()
    const reach = (file: string) => {
      if (reached.has(file)) return
      reached.add(file)
      for (const { fileName } of ts.preProcessFile(readFileSync(file, "utf8"), true, true).importedFiles)
        if (fileName.startsWith(".")) {
          const target = resolve(dirname(file), fileName)
          reach([target.replace(/\.js$/, ".ts"), target, join(target, "index.ts")].find((candidate) => existsSync(candidate) && candidate.includes(".")) ?? target)
        }
    }
    for (const file of build?.fileNames ?? []) reach(file)
    expect(reached.size).toBeGreaterThan(50)
    for (const file of reached) {
      const path = relative(root, file)
      expect(existsSync(file), `${path} exists`).toBe(true)
      expect(copied.some((source) => path === source || path.startsWith(`${source}/`)), `the build stage copies ${path}`).toBe(true)
    }
  })

  it("runs with production dependencies only, package.json (ESM) and dist, as a non-root user", () => {
    const modules = copies(runtime).find((c) => c.sources.some((source) => source.endsWith("/node_modules")))
    const installer = modules?.from === undefined ? runtime : stage(modules.from)
    expect(runs(installer).some((run) => /npm ci .*--omit=dev/.test(run)), "node_modules come from npm ci --omit=dev").toBe(true)
    expect(copies(runtime).find((c) => c.from === undefined && c.sources.includes("package.json"))).toBeDefined()
    const [outDir] = emittedEntry().split("/")
    expect(copies(runtime)).toContainEqual({ from: "build", sources: [`/app/${outDir}`], dest: `./${outDir}` })
    const users = only(runtime, "USER")
    expect(users.length).toBe(1)
    expect(users[0]).not.toMatch(/^(root|0)(:|$)/)
  })

  it("enters the CLI where tsconfig.build.json emits it, with serve as the default command", () => {
    expect(build?.fileNames).toContain(entrySource)
    expect(emittedEntry()).toBe("dist/src/cli/main.js")
    expect(only(runtime, "ENTRYPOINT").map((args) => JSON.parse(args))).toEqual([["node", emittedEntry()]])
    expect(only(runtime, "CMD").map((args) => JSON.parse(args))).toEqual([["serve"]])
    expect(only(runtime, "WORKDIR")).toEqual(["/app"])
  })

  it("health-checks /healthz on the HTTP port with Node's fetch", () => {
    const [check = ""] = only(runtime, "HEALTHCHECK")
    const exec = JSON.parse(check.slice(check.indexOf("CMD ") + 4)) as ReadonlyArray<string>
    expect(exec.slice(0, 2)).toEqual(["node", "-e"])
    expect(exec[2]).toContain("fetch('http://127.0.0.1:' + (process.env.CODEQ_HTTP_PORT || '8080') + '/healthz')")
    expect(routes).toContain("/healthz")
    expect(variablesTheCodeReads).toContain("CODEQ_HTTP_PORT")
  })

  it("keeps node_modules and dist out of the build context, and nothing the build copies", () => {
    const ignored = read(".dockerignore").split("\n").map((line) => line.trim()).filter((line) => line !== "" && !line.startsWith("#"))
    expect(ignored).toEqual(expect.arrayContaining(["node_modules", "dist"]))
    const globToRegExp = (glob: string) => new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*\*\//g, "(.*/)?").replace(/\*/g, "[^/]*")}(/.*)?$`)
    for (const source of stages.flatMap((s) => copies(s).filter((c) => c.from === undefined).flatMap((c) => c.sources))) {
      expect(existsSync(join(root, source)), source).toBe(true)
      for (const pattern of ignored.filter((p) => !p.startsWith("!"))) expect(source, `${source} is excluded by ${pattern}`).not.toMatch(globToRegExp(pattern))
    }
  })

  it("runs every CLI command on production dependencies alone (the image installs no devDependencies)", () => {
    const { dependencies } = JSON.parse(read("package.json")) as { dependencies: Record<string, string> }
    const packages = new Map<string, string>()
    const seen = new Set<string>()
    /** The modules `file` loads: its static imports, and with `lazy` its literal import() calls too. */
    const imports = (file: string, lazy: boolean): ReadonlyArray<string> => {
      const found: Array<string> = []
      const walk = (node: ts.Node): void => {
        // `import type` / `export type` are erased; everything else (even `import { type X }` under
        // verbatimModuleSyntax) stays a runtime import.
        if (ts.isImportDeclaration(node) && node.importClause?.phaseModifier !== ts.SyntaxKind.TypeKeyword && ts.isStringLiteral(node.moduleSpecifier))
          found.push(node.moduleSpecifier.text)
        else if (ts.isExportDeclaration(node) && !node.isTypeOnly && node.moduleSpecifier !== undefined && ts.isStringLiteral(node.moduleSpecifier))
          found.push(node.moduleSpecifier.text)
        else if (lazy && ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] !== undefined && ts.isStringLiteralLike(node.arguments[0]))
          found.push(node.arguments[0].text)
        ts.forEachChild(node, walk)
      }
      walk(ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.ES2022, true))
      return found
    }
    const visit = (file: string, lazy: boolean) => {
      if (seen.has(file)) return
      seen.add(file)
      for (const target of imports(file, lazy))
        if (target.startsWith(".")) visit(resolve(dirname(file), target.replace(/\.js$/, ".ts")), false)
        else if (!isBuiltin(target)) packages.set(target.split("/").slice(0, target.startsWith("@") ? 2 : 1).join("/"), relative(root, file))
    }
    // The entry loads each command's module when it runs (import() in main); a command's module
    // loads its static imports at once. Deeper import() calls are optional paths (a benchmark's
    // competitor, testcontainers when a test has Docker) and are not followed.
    visit(entrySource, true)
    expect(seen.size).toBeGreaterThan(10)
    expect([...packages.keys()]).toEqual(expect.arrayContaining(["nats", "effect"]))
    for (const [name, from] of packages) expect(Object.keys(dependencies), `${name}, imported by ${from}`).toContain(name)
  })
})
