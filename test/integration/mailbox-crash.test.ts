import '../../core/polyfill.js'
import { afterEach, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { newMessageId, type PeerIdString } from '../../core/ids.js'
import { createNode, type ParleyLibp2p } from '../../core/net/node.js'
import { MailboxClient } from '../../core/protocols/mailbox/client.js'
import { Cluster, freePort } from '../helpers/node-process.js'

// A real `parley relay` process killed with SIGKILL in the middle of a deposit storm: every
// deposit it acknowledged must still be there for the recipient after it restarts.
let cluster = new Cluster()
const nodes: ParleyLibp2p[] = []
afterEach(async () => {
  await Promise.all(nodes.splice(0).map(async (n) => { await n.stop() }))
  await cluster.cleanup()
  cluster = new Cluster()
})

async function peer (): Promise<ParleyLibp2p> {
  const n = await createNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
  await n.start()
  nodes.push(n)
  return n
}

describe('mailbox durability (spawned relay)', () => {
  it('delivers every deposit the relay acknowledged before kill -9', { timeout: 90_000 }, async () => {
    const port = await freePort()
    const relay = await cluster.start({ command: 'relay', label: 'R', port, extraArgs: ['--mailbox-deposit-burst', '100000', '--mailbox-deposits-per-second', '100000'] })
    const relayId = relay.ready.peerId as PeerIdString
    const relayAddr = multiaddr(relay.ready.addrs[0] ?? '')
    const a = await peer()
    const b = await peer()
    const bId = b.peerId.toString()
    await a.dial(relayAddr)
    const client = new MailboxClient(a)

    const acked = new Set<string>()
    let stop = false
    const storm = (async () => {
      while (!stop) {
        const batch = Array.from({ length: 16 }, () => ({ recipient: bId, id: newMessageId(), envelope: new Uint8Array(randomBytes(200)) }))
        try {
          const results = await client.deposit(relayId, batch)
          for (const r of results) if (r.ok) acked.add(r.id)
        } catch {
          // the relay is gone: unacknowledged deposits are the sender's to retry
        }
      }
    })()
    while (acked.size < 2000) await new Promise((resolve) => setTimeout(resolve, 5))
    await relay.kill9()
    stop = true
    await storm
    const ackedBeforeKill = acked.size

    await cluster.restart(relay, { command: 'relay' })
    await b.dial(relayAddr)
    const inbox = new MailboxClient(b)
    const got = new Set<string>()
    for (;;) {
      const { items, more } = await inbox.fetch(relayId, 256)
      for (const i of items) got.add(i.id)
      await inbox.ack(relayId, items.map((i) => i.id))
      if (!more) break
    }
    const lost = [...acked].filter((id) => !got.has(id))
    assert.equal(lost.length, 0, `${lost.length} of ${ackedBeforeKill} acknowledged deposits lost`)
    assert.ok(ackedBeforeKill >= 2000)
  })
})
