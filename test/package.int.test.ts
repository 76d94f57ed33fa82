/**
 * codeq as another project uses it (issue 12): the packed tarball installs into an empty project,
 * its SDK imports with plain `node` and type-checks with `tsc`, and its `codeq` binary runs.
 */
import { execFile } from "node:child_process"
import { mkdtemp, readdir, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { describe, expect, it } from "vitest"

const run = (command: string, args: ReadonlyArray<string>, cwd: string): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((done) => {
    execFile(command, [...args], { cwd, timeout: 180_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) =>
      done({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr })
    )
  })

const repo = resolve(new URL("..", import.meta.url).pathname)

describe("the npm package", () => {
  it("packs, installs into an empty project, imports with node, type-checks with tsc and runs its binary", async () => {
    const dir = await mkdtemp(join(tmpdir(), "codeq-pack-"))
    const packed = await run("npm", ["pack", "--pack-destination", dir, "--ignore-scripts"], repo)
    expect(packed.code, packed.stderr).toBe(0)
    const tarball = (await readdir(dir)).find((f) => f.endsWith(".tgz"))
    expect(tarball).toBeDefined()
    const list = await run("tar", ["-tzf", join(dir, tarball ?? "")], dir)
    const files = list.stdout.split("\n")
    expect(files).toContain("package/dist/src/index.js")
    expect(files).toContain("package/dist/src/index.d.ts")
    expect(files).toContain("package/dist/src/cli/main.js")
    expect(files.some((f) => f.startsWith("package/src/") || f.startsWith("package/test/"))).toBe(false)

    const project = join(dir, "app")
    await run("mkdir", ["-p", project], dir)
    await writeFile(join(project, "package.json"), JSON.stringify({ name: "app", version: "1.0.0", type: "module", private: true }))
    const installed = await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", join(dir, tarball ?? "")], project)
    expect(installed.code, installed.stderr).toBe(0)

    const imported = await run(process.execPath, ["-e", "import('codeq').then((m) => console.log(JSON.stringify(Object.keys(m).sort())))"], project)
    expect(imported.code, imported.stderr).toBe(0)
    const exported = JSON.parse(imported.stdout) as Array<string>
    for (const name of ["CodeqClient", "startBroker", "ValidationError", "complete", "fail", "nack", "abandon"]) expect(exported).toContain(name)

    await writeFile(
      join(project, "index.ts"),
      [
        'import { CodeqClient, type TaskView } from "codeq"',
        "export const connect = (): Promise<CodeqClient> => CodeqClient.connect({ servers: \"nats://127.0.0.1:4222\" })",
        "export const idOf = (task: TaskView): string => task.id",
        ""
      ].join("\n")
    )
    await writeFile(join(project, "tsconfig.json"), JSON.stringify({ compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext", target: "ES2022", strict: true, noEmit: true, skipLibCheck: true, types: [] }, files: ["index.ts"] }))
    const typed = await run(process.execPath, [join(repo, "node_modules/typescript/bin/tsc"), "-p", "."], project)
    expect(typed.code, typed.stdout + typed.stderr).toBe(0)

    const help = await run(join(project, "node_modules/.bin/codeq"), ["--help"], project)
    expect(help.code, help.stderr).toBe(0)
    expect(help.stdout).toContain("usage: codeq <command>")
  }, 300_000)
})
