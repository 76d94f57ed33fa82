/**
 * A 3-node JetStream cluster of real nats-servers on loopback, for fault tests: free ports for
 * clients and routes, a temp store and a config file per node (`server_name`, `jetstream
 * { store_dir }`, `cluster { name, listen, routes }`). It waits until JetStream has a meta leader,
 * provisions codeq's streams at 3 replicas, and can SIGKILL and restart any node on its own store
 * and say which node leads a stream.
 */
import { spawn, type ChildProcess } from "node:child_process"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { connect, type ConnectionOptions, type NatsConnection } from "nats"
import { findNatsServerBinary, freePort, waitForNatsReady } from "../../src/testing/natsServer.js"
import { DEFAULT_STREAM_SETTINGS, streamDefinitions, type Naming, type StreamSettings } from "../../streams/definitions.js"
import { provisionStreams } from "../../src/eventlog/provision.js"
import { waitFor } from "./harness.js"

export interface ClusterNode {
  readonly index: number
  /** `server_name`, e.g. `n0`. */
  readonly name: string
  /** `nats://127.0.0.1:<port>` */
  readonly url: string
  readonly storeDir: string
  /** True between a start and a kill. */
  readonly running: boolean
}

export interface NatsCluster {
  readonly nodes: ReadonlyArray<ClusterNode>
  /** Every client URL, node 0 first. */
  readonly urls: ReadonlyArray<string>
  /** The cluster's settings for codeq: three replicas. */
  readonly streamSettings: StreamSettings
  /**
   * A connection that prefers node `index` (listed first, no shuffling) and fails over to the
   * others; closed by `stop()`.
   */
  connect(index: number, options?: Partial<ConnectionOptions>): Promise<NatsConnection>
  /** Creates codeq's streams at three replicas. */
  provision(naming: Naming): Promise<void>
  /** SIGKILLs node `index` (its store is kept); resolves when the process is gone. */
  kill(index: number): Promise<void>
  /** Starts node `index` again on the same ports and store. */
  restart(index: number): Promise<void>
  /** The node leading `stream` right now (by its `server_name`). */
  leaderOf(stream: string): Promise<number>
  /** Waits until JetStream answers with a meta leader, through any running node. */
  waitForMetaLeader(timeoutMs?: number): Promise<void>
  /** Waits until `stream` has a leader and every replica is current. */
  waitForStreamHealthy(stream: string, timeoutMs?: number): Promise<void>
  /** Kills every node and deletes the stores. */
  stop(): Promise<void>
}

interface NodeState {
  readonly index: number
  readonly name: string
  readonly port: number
  readonly routePort: number
  readonly storeDir: string
  readonly configFile: string
  child: ChildProcess | undefined
}

const exited = (child: ChildProcess): Promise<void> =>
  child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once("exit", () => resolve()))

const configOf = (node: NodeState, clusterName: string, routePorts: ReadonlyArray<number>) =>
  [
    `server_name: ${node.name}`,
    `listen: 127.0.0.1:${node.port}`,
    `jetstream {`,
    `  store_dir: ${JSON.stringify(node.storeDir)}`,
    `}`,
    `cluster {`,
    `  name: ${clusterName}`,
    `  listen: 127.0.0.1:${node.routePort}`,
    `  routes: [`,
    ...routePorts.map((port) => `    nats-route://127.0.0.1:${port}`),
    `  ]`,
    `}`,
    ""
  ].join("\n")

/** Starts a cluster of `size` nodes (default 3) and waits for its meta leader. */
export const startNatsCluster = async (options: { readonly size?: number; readonly name?: string } = {}): Promise<NatsCluster> => {
  const binary = findNatsServerBinary()
  if (binary === undefined) throw new Error("nats-server not found on PATH or in /usr/sbin: the cluster fault tests need it")
  const size = options.size ?? 3
  const clusterName = options.name ?? `codeq-${process.pid}`
  const root = await mkdtemp(join(tmpdir(), "codeq-cluster-"))
  const nodes: Array<NodeState> = []
  for (let index = 0; index < size; index++)
    nodes.push({
      index,
      name: `n${index}`,
      port: await freePort(),
      routePort: await freePort(),
      storeDir: join(root, `n${index}`, "store"),
      configFile: join(root, `n${index}.conf`),
      child: undefined
    })
  const routePorts = nodes.map((n) => n.routePort)
  for (const node of nodes) await writeFile(node.configFile, configOf(node, clusterName, routePorts))
  const connections: Array<NatsConnection> = []
  const urlOf = (node: NodeState) => `nats://127.0.0.1:${node.port}`
  const nodeAt = (index: number): NodeState => {
    const node = nodes[index]
    if (node === undefined) throw new Error(`no node ${index}`)
    return node
  }

  const launch = async (node: NodeState): Promise<void> => {
    const child = spawn(binary, ["-c", node.configFile], { stdio: ["ignore", "pipe", "pipe"] })
    node.child = child
    await waitForNatsReady(child, 20_000)
    child.stdout?.resume()
    child.stderr?.resume()
  }
  const kill = async (index: number) => {
    const node = nodeAt(index)
    const child = node.child
    if (child === undefined) return
    child.kill("SIGKILL")
    await exited(child)
    node.child = undefined
  }

  /** A short-lived connection to any running node, for administrative requests. */
  const withAdmin = async <A>(use: (nc: NatsConnection) => Promise<A>): Promise<A> => {
    const running = nodes.filter((n) => n.child !== undefined).map(urlOf)
    const nc = await connect({ servers: running, noAsyncTraces: true, timeout: 2_000, maxReconnectAttempts: 0 })
    try {
      return await use(nc)
    } finally {
      await nc.close()
    }
  }

  const waitForMetaLeader = async (timeoutMs = 30_000) => {
    await waitFor(
      () =>
        withAdmin(async (nc) => {
          const jsm = await nc.jetstreamManager({ timeout: 2_000 })
          // Answers only once the meta group has a leader (10008 "temporarily unavailable" before).
          await jsm.getAccountInfo()
          return true
        }),
      { timeoutMs, intervalMs: 200, what: "a JetStream meta leader" }
    )
  }

  const streamState = (stream: string) =>
    withAdmin(async (nc) => {
      const jsm = await nc.jetstreamManager({ timeout: 2_000, checkAPI: false })
      return (await jsm.streams.info(stream)).cluster
    })

  try {
    await Promise.all(nodes.map(launch))
    await waitForMetaLeader()
  } catch (error) {
    await Promise.all(nodes.map((n) => kill(n.index)))
    await rm(root, { recursive: true, force: true })
    throw error
  }

  return {
    get nodes() {
      return nodes.map((n) => ({ index: n.index, name: n.name, url: urlOf(n), storeDir: n.storeDir, running: n.child !== undefined }))
    },
    urls: nodes.map(urlOf),
    streamSettings: { ...DEFAULT_STREAM_SETTINGS, replicas: size },
    connect: async (index, connectionOptions = {}) => {
      const first = nodeAt(index)
      const nc = await connect({
        servers: [urlOf(first), ...nodes.filter((n) => n !== first).map(urlOf)],
        noRandomize: true,
        noAsyncTraces: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        ...connectionOptions
      })
      connections.push(nc)
      return nc
    },
    provision: (naming) =>
      withAdmin(async (nc) => {
        await provisionStreams(nc, streamDefinitions(naming, { ...DEFAULT_STREAM_SETTINGS, replicas: size }))
      }),
    kill,
    restart: async (index) => {
      const node = nodeAt(index)
      if (node.child !== undefined) throw new Error(`node ${node.name} is running`)
      await launch(node)
    },
    leaderOf: async (stream) => {
      const leader = (await streamState(stream))?.leader
      const node = nodes.find((n) => n.name === leader)
      if (node === undefined) throw new Error(`stream ${stream} has no leader (${String(leader)})`)
      return node.index
    },
    waitForMetaLeader,
    waitForStreamHealthy: async (stream, timeoutMs = 30_000) => {
      await waitFor(
        async () => {
          const cluster = await streamState(stream)
          const replicas = cluster?.replicas ?? []
          return cluster?.leader !== undefined && replicas.length === size - 1 && replicas.every((r) => r.current && !r.offline)
        },
        { timeoutMs, intervalMs: 200, what: `stream ${stream} to have a leader and current replicas` }
      )
    },
    stop: async () => {
      await Promise.allSettled(connections.map((nc) => nc.close()))
      await Promise.all(nodes.map((n) => kill(n.index)))
      await rm(root, { recursive: true, force: true })
    }
  }
}
