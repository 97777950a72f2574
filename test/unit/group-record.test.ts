import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import * as Y from 'yjs'
import { newGroupId, type PeerIdString } from '../../core/ids.js'
import {
  MAX_RECORD_BYTES, RECORD_HASH_BYTES, clientIdOf, decodeRecord, encodeRecord, recordHash, recordKey, recordSpan, signRecord, verifyRecord
} from '../../core/groups/record.js'
import { GroupRecord as GroupRecordPb } from '../../core/groups/pb/group.js'
import { Rng } from '../helpers/prng.js'

const group = newGroupId()

async function identity (): Promise<{ key: Awaited<ReturnType<typeof generateKeyPair>>, peer: PeerIdString }> {
  const key = await generateKeyPair('Ed25519')
  return { key, peer: peerIdFromPrivateKey(key).toString() as PeerIdString }
}

function update (client: number, sets = 1): Uint8Array {
  const doc = new Y.Doc()
  doc.clientID = client
  let out: Uint8Array | undefined
  doc.on('update', (u: Uint8Array) => { out = u })
  doc.transact(() => {
    for (let i = 0; i < sets; i++) doc.getMap('meta').set(`k${i}`, i)
  })
  assert.ok(out !== undefined)
  return out
}

function assertRejects (p: Promise<unknown>, name: string): Promise<void> {
  return assert.rejects(p, (err: Error) => {
    assert.equal(err.name, name, err.message)
    return true
  })
}

function assertThrowsNamed (fn: () => unknown, name: string): void {
  assert.throws(fn, (err: Error) => {
    assert.equal(err.name, name, err.message)
    return true
  })
}

describe('group records', () => {
  it('sign, encode, decode and verify round-trip', async () => {
    const { key, peer } = await identity()
    const u = update(clientIdOf(peer), 3)
    const record = await signRecord(key, group, u)
    assert.equal(record.author, peer)
    const back = decodeRecord(encodeRecord(record))
    assert.deepEqual(back, record)
    await verifyRecord(back)
    assert.deepEqual(recordSpan(back.update), { client: clientIdOf(peer), clock: 0, count: 3 })
    assert.equal(recordKey(back), `${clientIdOf(peer)}:0`)
  })

  it('a chained record (prev) round-trips, and its signature covers prev', async () => {
    const { key, peer } = await identity()
    const first = await signRecord(key, group, update(clientIdOf(peer), 1))
    const second = await signRecord(key, group, update(clientIdOf(peer), 2), recordHash(first))
    assert.equal(first.prev, undefined)
    assert.equal(second.prev?.byteLength, RECORD_HASH_BYTES)
    const back = decodeRecord(encodeRecord(second))
    assert.deepEqual(back, second)
    await verifyRecord(back)
    // Another prev under the same signature: not what the author signed.
    await assertRejects(verifyRecord({ ...second, prev: new Uint8Array(RECORD_HASH_BYTES).fill(1) }), 'GroupSignatureError')
    // Dropping prev does not turn it into an unchained record either (another signed domain).
    await assertRejects(verifyRecord({ group: second.group, author: second.author, update: second.update, signature: second.signature }), 'GroupSignatureError')
    // The hash covers the author, the signature and the signed bytes.
    const other = await identity()
    assert.notDeepEqual(recordHash({ ...first, author: other.peer }), recordHash(first))
    assert.notDeepEqual(recordHash({ ...first, signature: new Uint8Array(64) }), recordHash(first))
    assert.notDeepEqual(recordHash({ ...first, update: update(clientIdOf(peer), 4) }), recordHash(first))
    // A prev of the wrong length is refused when decoding and when signing.
    const bad = GroupRecordPb.encode({ group, author: peer, update: new Uint8Array(first.update), signature: new Uint8Array(first.signature), prev: new Uint8Array(31) })
    assertThrowsNamed(() => decodeRecord(bad), 'InvalidGroupRecordError')
    await assertRejects(signRecord(key, group, first.update, new Uint8Array(31)), 'InvalidGroupRecordError')
  })

  it('a record signed by someone else than its author fails verification', async () => {
    const alice = await identity()
    const mallory = await identity()
    const forged = { ...(await signRecord(mallory.key, group, update(1))), author: alice.peer }
    await assertRejects(verifyRecord(forged), 'GroupSignatureError')
  })

  it('a signature over another group or another update fails', async () => {
    const { key } = await identity()
    const record = await signRecord(key, group, update(1))
    await assertRejects(verifyRecord({ ...record, group: newGroupId() }), 'GroupSignatureError')
    await assertRejects(verifyRecord({ ...record, update: update(2) }), 'GroupSignatureError')
    const sig = record.signature.slice()
    sig[0] = (sig[0] ?? 0) ^ 1
    await assertRejects(verifyRecord({ ...record, signature: sig }), 'GroupSignatureError')
  })

  it('only Ed25519 keys sign records', async () => {
    const key = await generateKeyPair('secp256k1')
    await assertRejects(signRecord(key, group, update(1)), 'GroupSignatureError')
  })

  it('refuses malformed records with InvalidGroupRecordError', async () => {
    const { key, peer } = await identity()
    const good = await signRecord(key, group, update(1))
    const cases: Uint8Array[] = [
      new Uint8Array(),
      encodeRecord(good).subarray(0, 20),
      GroupRecordPb.encode({ group: 'short', author: peer, update: new Uint8Array(good.update), signature: new Uint8Array(good.signature) }),
      GroupRecordPb.encode({ group, author: 'QmNotAPeer', update: new Uint8Array(good.update), signature: new Uint8Array(good.signature) }),
      GroupRecordPb.encode({ group, author: peer, update: new Uint8Array(), signature: new Uint8Array(good.signature) }),
      GroupRecordPb.encode({ group, author: peer, update: new Uint8Array(good.update), signature: new Uint8Array(12) }),
      GroupRecordPb.encode({ group, author: peer, update: new Uint8Array(MAX_RECORD_BYTES + 1), signature: new Uint8Array(good.signature) }),
      new Uint8Array(MAX_RECORD_BYTES + 4096)
    ]
    for (const bytes of cases) assertThrowsNamed(() => decodeRecord(bytes), 'InvalidGroupRecordError')
  })

  it('random bytes never decode into a record that verifies, and never throw anything unnamed', async () => {
    const rng = new Rng(5)
    for (let i = 0; i < 300; i++) {
      const bytes = rng.bytes(rng.int(200))
      try {
        const r = decodeRecord(bytes)
        await assertRejects(verifyRecord(r), 'GroupSignatureError')
      } catch (err) {
        assert.equal((err as Error).name, 'InvalidGroupRecordError')
      }
    }
  })

  it('a record span needs exactly one client section', () => {
    assertThrowsNamed(() => recordSpan(new Uint8Array([0, 0])), 'InvalidGroupRecordError')
    assertThrowsNamed(() => recordSpan(new Uint8Array([2, 1, 1, 0])), 'InvalidGroupRecordError')
    assertThrowsNamed(() => recordSpan(new Uint8Array([1, 0, 1, 0])), 'InvalidGroupRecordError')
    assertThrowsNamed(() => recordSpan(new Uint8Array([1, 1])), 'InvalidGroupRecordError')
  })

  it('clientIdOf is a stable 31-bit number per peer', async () => {
    const { peer } = await identity()
    const other = await identity()
    const id = clientIdOf(peer)
    assert.equal(id, clientIdOf(peer))
    assert.ok(Number.isInteger(id) && id >= 0 && id <= 0x7fffffff)
    assert.notEqual(id, clientIdOf(other.peer))
    // sha256('parley/group-client/1' || peer), first 4 bytes big-endian, top bit cleared
    const { createHash } = await import('node:crypto')
    const expected = createHash('sha256').update(`parley/group-client/1${peer}`).digest().readUInt32BE(0) & 0x7fffffff
    assert.equal(id, expected)
  })
})
