import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PeerIdString } from '../../core/ids.js'
import { decodeInvite, encodeInvite, parsePeerId, type Invite } from '../../core/identity/invite.js'

const ADDRS = ['/ip4/127.0.0.1/tcp/4001', '/ip6/::1/tcp/4002/ws', '/dns4/relay.example.org/tcp/443/wss']

function assertInvalidInvite (uri: unknown, why: string): void {
  assert.throws(() => decodeInvite(uri), (err: unknown) => {
    assert.ok(err instanceof Error, `${why}: an Error is thrown`)
    assert.equal(err.name, 'InvalidInviteError', `${why}: ${err.message}`)
    return true
  }, why)
}

describe('invites', () => {
  let peerId: PeerIdString
  let rsaLikeLegacy: PeerIdString

  before(async () => {
    peerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString() as PeerIdString
    rsaLikeLegacy = peerIdFromPrivateKey(await generateKeyPair('secp256k1')).toString() as PeerIdString
  })

  describe('round trip', () => {
    it('keeps peer id, addresses (in order) and name', () => {
      const invite: Invite = { peerId, addrs: ADDRS, name: 'Ada Lovelace' }
      const uri = encodeInvite(invite)
      assert.ok(uri.startsWith(`parley://invite/${peerId}`), uri)
      assert.deepEqual(decodeInvite(uri), invite)
    })

    it('keeps names with URL-special and non-ASCII characters', () => {
      for (const name of ['a&b=c?d#e', 'plus+and space', '100% sure', 'Zoë 🦜 Ω', '/slash/']) {
        const invite: Invite = { peerId, addrs: [ADDRS[0] as string], name }
        assert.deepEqual(decodeInvite(encodeInvite(invite)), invite, name)
      }
    })

    it('works with no addresses and no name', () => {
      const uri = encodeInvite({ peerId, addrs: [] })
      assert.equal(uri, `parley://invite/${peerId}`)
      assert.deepEqual(decodeInvite(uri), { peerId, addrs: [] })
      assert.deepEqual(decodeInvite(encodeInvite({ peerId, addrs: [], name: '' })), { peerId, addrs: [] })
    })

    it('works for other key types and with surrounding whitespace', () => {
      assert.deepEqual(decodeInvite(encodeInvite({ peerId: rsaLikeLegacy, addrs: ADDRS })), { peerId: rsaLikeLegacy, addrs: ADDRS })
      assert.equal(decodeInvite(`  ${encodeInvite({ peerId, addrs: [] })}\n`).peerId, peerId)
    })

    it('accepts the maximum of 16 addresses and a 64-character name', () => {
      const addrs = Array.from({ length: 16 }, (_, i) => `/ip4/10.0.0.${i + 1}/tcp/${4000 + i}`)
      const invite: Invite = { peerId, addrs, name: 'n'.repeat(64) }
      assert.deepEqual(decodeInvite(encodeInvite(invite)), invite)
    })
  })

  describe('peer id case', () => {
    it('is preserved exactly (base58 is case-sensitive)', () => {
      assert.match(peerId, /[a-z]/)
      assert.match(peerId, /[A-Z]/)
      const decoded = decodeInvite(`parley://invite/${peerId}?addr=${encodeURIComponent(ADDRS[0] as string)}`)
      assert.equal(decoded.peerId, peerId)
    })

    it('a case-changed peer id is not the same peer and is rejected', () => {
      assertInvalidInvite(`parley://invite/${peerId.toLowerCase()}`, 'lower-cased peer id')
      assertInvalidInvite(`parley://invite/${peerId.toUpperCase()}`, 'upper-cased peer id')
    })
  })

  describe('rejects with InvalidInviteError', () => {
    it('anything that is not a parley invite URI', () => {
      const cases: Array<[unknown, string]> = [
        ['', 'empty string'],
        [undefined, 'undefined'],
        [null, 'null'],
        [42, 'a number'],
        [{ peerId: 'x' }, 'an object'],
        ['not a uri', 'plain text'],
        [peerId, 'a bare peer id'],
        [`https://invite/${peerId}`, 'https scheme'],
        [`https://example.com/invite/${peerId}`, 'web link'],
        [`parley://contact/${peerId}`, 'wrong host'],
        [`parley://invitex/${peerId}`, 'host with a suffix'],
        [`parley:invite/${peerId}`, 'no authority'],
        [`parley:///invite/${peerId}`, 'empty host'],
        [`parley://invite:99/${peerId}`, 'a port']
      ]
      for (const [uri, why] of cases) assertInvalidInvite(uri, why)
    })

    it('user info or a fragment around the invite host', () => {
      assertInvalidInvite(`parley://user@invite/${peerId}`, 'user info')
      assertInvalidInvite(`parley://user:pw@invite/${peerId}`, 'user and password')
      assertInvalidInvite(`parley://invite/${peerId}#x`, 'fragment')
    })

    it('bad peer ids', () => {
      const cases: Array<[string, string]> = [
        ['parley://invite/', 'missing peer id'],
        ['parley://invite', 'no path at all'],
        ['parley://invite/notapeerid', 'garbage'],
        [`parley://invite/${peerId.slice(0, -1)}`, 'truncated'],
        [`parley://invite/${peerId}x`, 'one character too many'],
        [`parley://invite/${peerId.slice(0, -1)}0`, 'not base58 (0)'],
        [`parley://invite/${peerId}/extra`, 'extra path segment'],
        [`parley://invite/${'1'.repeat(200)}`, 'very long'],
        [`parley://invite/%00${peerId}`, 'encoded NUL']
      ]
      for (const [uri, why] of cases) assertInvalidInvite(uri, why)
    })

    it('bad multiaddrs', () => {
      for (const addr of ['not-a-multiaddr', '/ip4/999.1.1.1/tcp/1', '/tcp/notaport', '/ip4/127.0.0.1/tcp/70000', '/nope/1']) {
        const uri = `parley://invite/${peerId}?addr=${encodeURIComponent(ADDRS[0] as string)}&addr=${encodeURIComponent(addr)}`
        assertInvalidInvite(uri, `address ${addr}`)
      }
    })

    it('more than 16 addresses', () => {
      const params = Array.from({ length: 17 }, (_, i) => `addr=${encodeURIComponent(`/ip4/10.0.0.${i + 1}/tcp/4001`)}`).join('&')
      assertInvalidInvite(`parley://invite/${peerId}?${params}`, '17 addresses')
    })

    it('URIs longer than 4096 characters', () => {
      const base = `parley://invite/${peerId}?name=x&pad=`
      const justFits = base + 'p'.repeat(4096 - base.length)
      assert.equal(justFits.length, 4096)
      assert.equal(decodeInvite(justFits).peerId, peerId)
      assertInvalidInvite(justFits + 'p', '4097 characters')
      assertInvalidInvite(`parley://invite/${peerId}?pad=${'p'.repeat(1_000_000)}`, 'a megabyte')
    })

    it('names longer than 64 characters', () => {
      assertInvalidInvite(`parley://invite/${peerId}?name=${'n'.repeat(65)}`, '65-character name')
    })
  })

  describe('parsePeerId', () => {
    it('returns valid peer ids unchanged and rejects others with InvalidPeerIdError', () => {
      assert.equal(parsePeerId(peerId), peerId)
      for (const bad of ['', 'abc', peerId.toLowerCase(), 'x'.repeat(129), 7, undefined]) {
        assert.throws(() => parsePeerId(bad), (err: unknown) => err instanceof Error && err.name === 'InvalidPeerIdError')
      }
    })
  })
})
