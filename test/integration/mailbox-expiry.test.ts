import '../../core/polyfill.js'
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { DirectoryService } from '../../relay/directory/service.js'
import { DEFAULT_MAILBOX_LIMITS, MailboxService } from '../../relay/mailbox/service.js'
import { MailboxStore } from '../../relay/mailbox/store.js'
import { PrekeyStore } from '../../relay/prekeys/store.js'
import { createRelayNode, DEFAULT_RELAY_LIMITS } from '../../relay/relay-node.js'
import { eventually, removeDir, startPeer, statusEvents, tempDir } from '../helpers/messengers.js'

// Real relay (in this process, so the test can run its expiry sweep) and two real nodes that
// reach each other only through it: mail that expires unread turns 'failed' at the sender.
describe('mailbox expiry seen by the sender', () => {
  it('marks a deposited message failed once the relay reports it expired unread', { timeout: 60_000 }, async () => {
    const dir = await tempDir()
    const prekeyStore = new PrekeyStore(join(dir, 'prekeys'))
    await prekeyStore.open()
    const relay = await createRelayNode({ prekeys: { store: prekeyStore }, privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], limits: { ...DEFAULT_RELAY_LIMITS, inboundConnectionThreshold: 1000 } })
    const store = new MailboxStore(join(dir, 'mailbox'))
    await store.open()
    const mailbox = new MailboxService(relay, store, { ...DEFAULT_MAILBOX_LIMITS, ttlMs: 300 })
    await mailbox.start()
    await new DirectoryService(relay).start()
    await relay.start()
    const relayAddr = relay.getMultiaddrs()[0]?.toString() ?? ''
    const opts = { listen: ['/p2p-circuit'], relays: [relayAddr] }
    const a = await startPeer(opts)
    const b = await startPeer(opts)
    try {
      await a.m.addContact(b.m.whoami().invite)
      await eventually(() => Object.keys(b.m.prekeysAtRelay()).length > 0, 'B published its prekeys')
      await b.m.stop() // never comes back
      const sent = await a.m.sendText(b.m.peerId, 'nobody will read this')
      await eventually(() => statusEvents(a.events, 'sent').some((e) => e.id === sent.id), 'deposited', 30_000)
      await new Promise((resolve) => setTimeout(resolve, 400))
      assert.equal(await mailbox.sweep(), 1, 'expired at the relay')
      await a.restart() // reconnecting to its relay, A asks which of its deposits expired
      await eventually(async () => (await a.m.history(b.m.peerId, 5))[0]?.status === 'failed', 'failed at the sender', 30_000)
      assert.ok(statusEvents(a.events, 'failed').some((e) => e.id === sent.id), 'a failed status event')
    } finally {
      await a.stop()
      await relay.stop()
      await store.close()
      await prekeyStore.close()
      await removeDir(a.dir)
      await removeDir(b.dir)
      await removeDir(dir)
    }
  })
})
