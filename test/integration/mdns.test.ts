import '../../core/polyfill.js'
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { encodeInvite } from '../../core/identity/invite.js'
import { eventually, messageEvents, removeDir, startPeer } from '../helpers/messengers.js'

// Real mDNS (multicast on this host) between two real nodes: no relay, no address exchange.
describe('LAN discovery with mDNS', () => {
  it('delivers to a contact whose address only mDNS knows', async () => {
    const a = await startPeer({ mdns: true })
    const b = await startPeer({ mdns: true })
    try {
      // An invite without addresses: A learns where B is only from B's mDNS announcements.
      await a.m.addContact(encodeInvite({ peerId: b.m.peerId, addrs: [] }))
      const sent = await a.m.sendText(b.m.peerId, 'found you on the LAN')
      await eventually(() => messageEvents(b.events).some((e) => e.id === sent.id), 'delivery after mDNS discovery', 20_000)
      assert.equal(messageEvents(b.events).filter((e) => e.id === sent.id).length, 1)
    } finally {
      await a.stop()
      await b.stop()
      await removeDir(a.dir)
      await removeDir(b.dir)
    }
  })

  it('finds nobody with mDNS switched off', async () => {
    const a = await startPeer({ mdns: false })
    const b = await startPeer({ mdns: false })
    try {
      await a.m.addContact(encodeInvite({ peerId: b.m.peerId, addrs: [] }))
      await a.m.sendText(b.m.peerId, 'nobody hears this')
      await new Promise((resolve) => setTimeout(resolve, 1500))
      assert.equal(messageEvents(b.events).length, 0)
      assert.equal(a.m.pendingCount(b.m.peerId), 1, 'still waiting in the outbox')
    } finally {
      await a.stop()
      await b.stop()
      await removeDir(a.dir)
      await removeDir(b.dir)
    }
  })
})
