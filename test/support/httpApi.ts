/**
 * A broker, a client and the HTTP API on a free loopback port for one test file, with the static
 * tokens of jwks.ts and a JSON API caller; stopped after the file. Options cover what differs
 * between files (client settings such as a tracer provider; an identity provider whose JWTs the
 * API accepts too).
 */
import { afterAll, beforeAll } from "vitest"
import { startBroker, type RunningBroker } from "../../src/broker.js"
import { startHttpServer, type RunningHttpServer } from "../../src/http/index.js"
import { CodeqClient, type CodeqClientOptions } from "../../src/sdk/client.js"
import { claimSubjects, claimsStream } from "../../streams/definitions.js"
import { brokerConfig, freshNaming } from "./harness.js"
import { STATIC_TOKENS, apiClient, startIdentityProvider, type ApiCall, type TestIdentityProvider } from "./jwks.js"

interface Running {
  readonly broker: RunningBroker
  readonly client: CodeqClient
  readonly http: RunningHttpServer
  readonly call: ApiCall
  readonly idp: TestIdentityProvider | undefined
}

export interface HttpApiOptions {
  readonly client?: Omit<CodeqClientOptions, "servers" | "naming">
  /** Start a test identity provider and accept its JWTs (JWKS cache age in ms; the server's default without). */
  readonly identity?: { readonly cacheMaxAgeMs?: number }
}

export const useHttpApi = (nats: { readonly url: () => string }, options: HttpApiOptions = {}) => {
  const naming = freshNaming()
  let running: Running | undefined
  beforeAll(async () => {
    const broker = await startBroker(brokerConfig(nats.url(), naming))
    const client = await CodeqClient.connect({ ...options.client, servers: nats.url(), naming })
    const idp = options.identity === undefined ? undefined : await startIdentityProvider()
    const jwt =
      idp === undefined
        ? undefined
        : { jwksUrl: idp.jwksUrl, issuer: idp.issuer, audience: idp.audience, cooldownMs: 0, ...(options.identity?.cacheMaxAgeMs !== undefined ? { cacheMaxAgeMs: options.identity.cacheMaxAgeMs } : {}) }
    const http = await startHttpServer({ client, auth: { staticTokens: Object.values(STATIC_TOKENS), ...(jwt !== undefined ? { jwt } : {}) }, port: 0, host: "127.0.0.1" })
    running = { broker, client, http, call: apiClient(http.url), idp }
  })
  afterAll(async () => {
    await running?.http.close()
    await running?.idp?.close()
    await running?.client.close()
    await running?.broker.stop()
  })
  const get = (): Running => {
    if (running === undefined) throw new Error("the HTTP API is not started")
    return running
  }
  const call: ApiCall = (method, path, callOptions) => get().call(method, path, callOptions)
  /**
   * Claim messages of a command in the claim stream: tasks dispatched and not yet settled. Wait on
   * it before a claim that must find several tasks there (a batch claim waits only for its first).
   */
  const dispatched = async (command: string, tenant = "acme"): Promise<number> => {
    const jsm = await get().client.nc.jetstreamManager({ checkAPI: false })
    const info = await jsm.streams.info(claimsStream(naming), { subjects_filter: claimSubjects(naming, tenant, command) })
    return Object.values(info.state.subjects ?? {}).reduce((sum, count) => sum + count, 0)
  }
  const idp = (): TestIdentityProvider => {
    const started = get().idp
    if (started === undefined) throw new Error("no identity provider: pass `identity` to useHttpApi")
    return started
  }
  return { naming, call, dispatched, client: () => get().client, http: () => get().http, idp }
}
