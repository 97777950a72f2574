import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { mergeRelayFlags, parseSettingsPatch, readNetworkSettings } from '../../core/settings.js'

const relayId = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
const otherId = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
const relay = `/ip4/203.0.113.7/tcp/4001/p2p/${relayId}`
const other = `/dns4/relay.example.org/tcp/443/wss/p2p/${otherId}`

describe('settings (core/settings.ts)', () => {
  it('parses a patch: only the fields given, relays in canonical form', () => {
    assert.deepEqual(parseSettingsPatch({}), {})
    assert.deepEqual(parseSettingsPatch({ lanDiscovery: false }), { lanDiscovery: false })
    assert.deepEqual(parseSettingsPatch({ relays: [` ${relay} `, other] }), { relays: [relay, other] })
    assert.deepEqual(parseSettingsPatch({ relays: [] }), { relays: [] })
  })

  it('refuses what is not an object, too many relays, a bad peer id', () => {
    for (const bad of [null, [], 'relays', 3]) assert.throws(() => parseSettingsPatch(bad), { name: 'InvalidRequestError', message: 'settings must be an object' })
    const many = Array.from({ length: 17 }, (_, i) => `/ip4/203.0.113.${i}/tcp/4001/p2p/${relayId}`)
    assert.throws(() => parseSettingsPatch({ relays: many }), { name: 'InvalidRequestError', message: 'at most 16 relays' })
    assert.throws(() => parseSettingsPatch({ relays: ['/ip4/203.0.113.7/tcp/4001/p2p/QmNotAPeerId'] }), { name: 'InvalidRequestError' })
  })

  it('adds --relay flags to the stored list; a flag for a stored relay replaces its address', () => {
    assert.deepEqual(mergeRelayFlags([], []), [])
    assert.deepEqual(mergeRelayFlags([relay], [other]), [relay, other])
    assert.deepEqual(mergeRelayFlags([relay, other], [relay]), [relay, other], 'given again: unchanged')
    const moved = `/ip4/198.51.100.1/tcp/4001/p2p/${relayId}`
    assert.deepEqual(mergeRelayFlags([relay, other], [moved]), [moved, other])
    assert.throws(() => mergeRelayFlags([relay], ['/ip4/1.2.3.4/tcp/1']), { name: 'InvalidRequestError' })
  })

  it('reads stored settings, falling back to the defaults for anything unreadable', () => {
    assert.deepEqual(readNetworkSettings(undefined), { relays: [], lanDiscovery: true })
    assert.deepEqual(readNetworkSettings(JSON.stringify({ relays: [relay], lanDiscovery: false })), { relays: [relay], lanDiscovery: false })
    assert.deepEqual(readNetworkSettings(JSON.stringify({ lanDiscovery: false })), { relays: [], lanDiscovery: false })
    assert.deepEqual(readNetworkSettings('{not json'), { relays: [], lanDiscovery: true })
    assert.deepEqual(readNetworkSettings(JSON.stringify({ relays: ['nope'] })), { relays: [], lanDiscovery: true })
  })
})
