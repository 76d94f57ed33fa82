/** The EventLog contract on JetStream: a real nats-server, a stream namespace of its own per test. */
import { headers } from "nats"
import { JetStreamEventLog } from "../src/eventlog/jetstream.js"
import { eventLogContract } from "./support/eventLogContract.js"
import { freshNaming, provision, useNatsServer } from "./support/harness.js"

const nats = useNatsServer()

eventLogContract("the JetStream event log", {
  make: async () => {
    const naming = freshNaming()
    const nc = await nats.connect()
    await provision(nc, naming)
    const log = JetStreamEventLog.connect(nc, naming)
    const js = nc.jetstream()
    return {
      nc,
      log,
      naming,
      publishRaw: async (subject, data, given = {}) => {
        const h = headers()
        for (const [key, value] of Object.entries(given)) h.set(key, value)
        await js.publish(subject, data, { headers: h })
      },
      close: () => log.close()
    }
  },
  teardown: async ({ nc, log }) => {
    log.close()
    await nc.close()
  }
})
