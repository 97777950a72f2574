import '../../core/polyfill.js'
import { after, afterEach, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { peerIdFromString } from '@libp2p/peer-id'
import type { SettingsView } from '../../core/api/contract.js'
import { createDispatcher, type Dispatch } from '../../core/api/dispatcher.js'
import { encodeInvite } from '../../core/identity/invite.js'
import { join } from 'node:path'
import { LevelStore } from '../../core/store/level-store.js'
import { NETWORK_SETTING } from '../../core/settings.js'
import { eventually, messageEvents, removeDir, startPeer, statusEvents, tempDir, type TestPeer } from '../helpers/messengers.js'
import { Cluster, freePort } from '../helpers/node-process.js'
import { startRelay, type TestRelay } from '../helpers/relay.js'

// settings.get / settings.set over the real dispatcher, on Messengers with real libp2p on
// 127.0.0.1, real level stores in temp dirs and real relays (mailbox, prekeys, circuit relay).

const peers: TestPeer[] = []
afterEach(async () => {
  for (const p of peers.splice(0)) {
    await p.stop().catch(() => {})
    await removeDir(p.dir)
  }
})

async function peer (opts: Parameters<typeof startPeer>[0] = {}): Promise<TestPeer> {
  const p = await startPeer(opts)
  peers.push(p)
  return p
}

async function get (dispatch: Dispatch): Promise<SettingsView> {
  return await dispatch('settings.get', {}) as SettingsView
}

async function set (dispatch: Dispatch, params: Record<string, unknown>): Promise<SettingsView> {
  return await dispatch('settings.set', params) as SettingsView
}

function circuitAddrs (p: TestPeer, relayId: string): string[] {
  return p.m.whoami().addrs.filter((a) => a.includes(`/p2p/${relayId}/p2p-circuit`))
}

describe('settings: relays and LAN discovery', () => {
  let relay: TestRelay
  let relayId: string
  before(async () => {
    relay = await startRelay()
    relayId = relay.node.peerId.toString()
  })
  after(async () => { await relay.stop() })

  it('refuses bad settings with a clear InvalidRequestError and changes nothing', async () => {
    const a = await peer()
    const api = createDispatcher(a.m)
    const initial = await get(api)
    assert.deepEqual(initial, { relays: [], relaysConnected: [], lanDiscovery: true, lanDiscoveryForcedOff: true })

    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ relays: ['not a multiaddr'] }, /not a multiaddr: "not a multiaddr"/],
      [{ relays: ['/ip4/127.0.0.1/tcp/4001'] }, /must end with \/p2p\/<the relay's peer id>/],
      [{ relays: [`/p2p/${relayId}`] }, /needs a network address/],
      [{ relays: [`${relay.addr}/p2p-circuit`] }, /cannot be a circuit address/],
      [{ relays: [relay.addr, relay.addr] }, /listed twice/],
      [{ relays: relay.addr }, /"relays" must be an array/],
      [{ relays: [42] }, /must be a string/],
      [{ lanDiscovery: 'no' }, /"lanDiscovery" must be true or false/],
      [{ lanDiscovery: null }, /"lanDiscovery" must be true or false/],
      [{ colour: 'blue' }, /unknown setting "colour" \(settable: relays, lanDiscovery\)/],
      // One bad field spoils the whole request: the good one is not applied either.
      [{ relays: [relay.addr], lanDiscovery: 1 }, /"lanDiscovery" must be true or false/],
      [{ relays: [relay.addr], extra: true }, /unknown setting "extra"/],
      [{ lanDiscovery: false, relays: [relay.addr, '/ip4/1.2.3.4/tcp/1'] }, /must end with \/p2p\//]
    ]
    for (const [params, message] of bad) {
      await assert.rejects(set(api, params), (err: Error) => {
        assert.equal(err.name, 'InvalidRequestError', JSON.stringify(params))
        assert.match(err.message, message)
        return true
      })
    }
    assert.deepEqual(await get(api), initial, 'nothing changed')
    assert.equal(a.m.libp2p.getConnections(peerIdFromString(relayId)).length, 0, 'no relay dialled')
  })

  it('keeps settings across a restart; --relay flags are added to the stored list', { timeout: 60_000 }, async () => {
    const other = await startRelay()
    try {
      // mDNS must not run outside the private network namespace of mdns.test.ts, so this
      // node starts with lanDiscovery already off in its store (and mDNS allowed).
      const dir = await tempDir()
      const seed = new LevelStore(join(dir, 'db'))
      await seed.open()
      await seed.putSetting(NETWORK_SETTING, JSON.stringify({ lanDiscovery: false }))
      await seed.close()
      const a = await peer({ dir, mdns: true })
      assert.equal(a.m.libp2p.services.lan?.active, false, 'mDNS not started')
      let api = createDispatcher(a.m)
      const changed = await set(api, { relays: [relay.addr] })
      assert.deepEqual(changed.relays, [relay.addr])
      assert.equal(changed.lanDiscovery, false)
      assert.equal(changed.lanDiscoveryForcedOff, false)

      await a.restart()
      api = createDispatcher(a.m)
      const back = await get(api)
      assert.deepEqual(back.relays, [relay.addr], 'relays kept')
      assert.equal(back.lanDiscovery, false, 'lanDiscovery kept')
      assert.equal(a.m.libp2p.services.lan?.active, false, 'mDNS not started')
      await eventually(async () => (await get(api)).relaysConnected.includes(relay.addr), 'connected to the stored relay')

      // A restart with a --relay flag (MessengerOptions.relays) adds it; the stored one stays.
      await a.m.stop()
      const withFlag = await startPeer({ dir: a.dir, mdns: true, relays: [other.addr] })
      peers.push(withFlag)
      peers.splice(peers.indexOf(a), 1)
      const flagged = await get(createDispatcher(withFlag.m))
      assert.deepEqual(flagged.relays, [relay.addr, other.addr])
      await withFlag.restart() // and without the flag: still both
      assert.deepEqual((await get(createDispatcher(withFlag.m))).relays, [relay.addr, other.addr])
    } finally {
      await other.stop()
    }
  })

  it('a relay added at runtime is used at once (reservation, prekeys, mailbox); a removed one is not', { timeout: 90_000 }, async () => {
    // A starts with no relay at all, listening on loopback and (for reservations) /p2p-circuit.
    const a = await peer({ listen: ['/ip4/127.0.0.1/tcp/0', '/p2p-circuit'] })
    const api = createDispatcher(a.m)
    assert.deepEqual(circuitAddrs(a, relayId), [])

    const added = await set(api, { relays: [relay.addr] })
    assert.deepEqual(added.relays, [relay.addr])
    await eventually(() => circuitAddrs(a, relayId).length > 0, 'whoami names the new relay (circuit reservation)')
    assert.ok(a.m.whoami().invite.includes(encodeURIComponent(`/p2p/${relayId}/p2p-circuit`)), 'and so does the invite')
    await eventually(() => (a.m.prekeysAtRelay()[relayId] ?? 0) > 0, 'prekey bundle published at the new relay')
    await eventually(async () => (await get(api)).relaysConnected.includes(relay.addr), 'settings.get: connected')
    const circuit = circuitAddrs(a, relayId)[0] ?? ''

    // Removed: hung up on, no circuit address, no mailbox drains.
    const removed = await set(api, { relays: [] })
    assert.deepEqual(removed.relays, [])
    await eventually(() => a.m.libp2p.getConnections(peerIdFromString(relayId)).length === 0, 'hung up on the removed relay')
    await eventually(() => circuitAddrs(a, relayId).length === 0, 'circuit address gone')
    assert.deepEqual((await get(api)).relaysConnected, [])

    // B knows A only by A's circuit address at the relay: with no reservation there, B's
    // message goes into A's mailbox at the relay (B takes A's bundle from the relay).
    const b = await peer()
    await b.m.addContact(encodeInvite({ peerId: a.m.peerId, addrs: [circuit.replace(/\/p2p\/[^/]+$/, '')], name: 'A' }))
    const sent = await b.m.sendText(a.m.peerId, 'waiting at the relay')
    await eventually(() => statusEvents(b.events, 'sent').some((e) => e.id === sent.id), 'deposited in the relay mailbox', 30_000)
    await new Promise((resolve) => setTimeout(resolve, 1500))
    assert.equal(messageEvents(a.events).length, 0, 'A does not fetch from a relay it removed')

    // Added again at runtime: A fetches its mail there at once.
    await set(api, { relays: [relay.addr] })
    await eventually(() => messageEvents(a.events).some((e) => e.id === sent.id), 'A fetched the mail from the re-added relay', 30_000)
    assert.equal(messageEvents(a.events).filter((e) => e.id === sent.id).length, 1, 'shown once')
  })
})

describe('settings over the JSON lines of `parley node`', () => {
  const cluster = new Cluster()
  after(async () => { await cluster.cleanup() })

  it('settings.get/set, --relay added to the stored list, kept across a restart', { timeout: 60_000 }, async () => {
    const relay = await cluster.start({ command: 'relay', label: 'R' })
    const relayAddr = relay.ready.addrs[0] ?? ''
    const a = await cluster.start({ label: 'A', port: await freePort(), extraArgs: ['--relay', relayAddr, '--no-mdns'] })
    const s = await a.call('settings.get', {})
    assert.deepEqual(s.relays, [relayAddr])
    assert.equal(s.lanDiscoveryForcedOff, true)
    const err = await a.callError({ cmd: 'settings.set', relays: ['/ip4/127.0.0.1/tcp/1'] })
    assert.equal(err.name, 'InvalidRequestError')
    assert.match(err.message, /must end with \/p2p\//)
    const off = await a.call('settings.set', { lanDiscovery: false })
    assert.equal(off.lanDiscovery, false)
    await a.stop()
    const again = await cluster.restart(a, { label: 'A' }) // no --relay (--no-mdns: always, in tests)
    const kept = await again.call('settings.get', {})
    assert.deepEqual(kept.relays, [relayAddr])
    assert.equal(kept.lanDiscovery, false)
    await eventually(async () => (await again.call('settings.get', {})).relaysConnected.includes(relayAddr), 'connected to the stored relay')
  })
})
