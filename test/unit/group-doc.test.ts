import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import { newGroupId, ulidFactory, type GroupId, type MessageId, type PeerIdString } from '../../core/ids.js'
import { GroupDoc, MAX_GROUP_TEXT_BYTES, recordKey, type GroupMessageView } from '../../core/groups/doc.js'
import { MAX_RECORD_BYTES, clientIdOf, recordHash, signRecord, type GroupRecord } from '../../core/groups/record.js'
import { Rng } from '../helpers/prng.js'

interface Peer {
  key: PrivateKey
  peer: PeerIdString
}

const T0 = 1_700_000_000_000
const nextId = ulidFactory(() => T0)
const REFUSALS = new Set(['InvalidGroupRecordError', 'GroupSignatureError', 'GroupUpdateRefusedError', 'NotGroupAdminError', 'NotGroupMemberError', 'MissingDependencyError'])

async function identity (): Promise<Peer> {
  const key = await generateKeyPair('Ed25519')
  return { key, peer: peerIdFromPrivateKey(key).toString() as PeerIdString }
}

/** A group of alice (admin), bob and carol, each with a document holding the creation. */
async function trio (): Promise<{ group: GroupId, alice: Peer, bob: Peer, carol: Peer, a: GroupDoc, b: GroupDoc, c: GroupDoc, creation: GroupRecord }> {
  const group = newGroupId()
  const [alice, bob, carol] = [await identity(), await identity(), await identity()] as [Peer, Peer, Peer]
  const { doc: a, record: creation } = await GroupDoc.create({ group, self: alice.peer, privateKey: alice.key, name: 'Hikers', members: [bob.peer, carol.peer], now: T0 })
  const b = await joined(group, bob, [creation])
  const c = await joined(group, carol, [creation])
  return { group, alice, bob, carol, a, b, c, creation }
}

async function joined (group: GroupId, who: Peer, records: GroupRecord[]): Promise<GroupDoc> {
  const doc = GroupDoc.open({ group, self: who.peer, privateKey: who.key, records: [] })
  const result = await doc.applyMany(records)
  assert.deepEqual(result.refused, [])
  return doc
}

async function post (doc: GroupDoc, text: string): Promise<GroupRecord> {
  return await doc.addMessage({ id: nextId(), text, sentAt: T0, lamport: doc.lamport + 1 })
}

/** A record made by hand on a copy of `doc`'s state: what a modified client could send. */
async function forge (doc: GroupDoc, who: Peer, change: (y: Y.Doc) => void, client = clientIdOf(who.peer)): Promise<GroupRecord> {
  const y = new Y.Doc()
  Y.applyUpdate(y, doc.snapshot())
  y.clientID = client
  let update: Uint8Array | undefined
  y.on('update', (u: Uint8Array, origin: unknown) => {
    if (origin === 'forge') update = u
  })
  y.transact(() => change(y), 'forge')
  assert.ok(update !== undefined, 'the forged change produced an update')
  return await signRecord(who.key, doc.group, update)
}

/** A V1 update written byte by byte: one client section, then a delete set. */
function rawUpdate (client: number, clock: number, count: number, structs: (e: encoding.Encoder) => void): Uint8Array {
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, 1)
  encoding.writeVarUint(e, count)
  encoding.writeVarUint(e, client)
  encoding.writeVarUint(e, clock)
  structs(e)
  encoding.writeVarUint(e, 0) // no delete set
  return encoding.toUint8Array(e)
}

/** Apply must fail with `name` (and `reason`), leaving the document exactly as it was. */
async function assertRefused (doc: GroupDoc, record: GroupRecord, name: string, reason?: string): Promise<void> {
  const before = doc.snapshot()
  const size = doc.size
  const count = doc.messageCount
  await assert.rejects(doc.apply(record), (err: Error & { reason?: string }) => {
    assert.equal(err.name, name, err.message)
    if (reason !== undefined) assert.equal(err.reason, reason, err.message)
    return true
  })
  assert.deepEqual(doc.snapshot(), before, 'the document is unchanged')
  assert.equal(doc.size, size)
  assert.equal(doc.messageCount, count)
}

/** Apply hostile input: it may only be refused with a named error, and change nothing. */
async function assertNotApplied (doc: GroupDoc, record: GroupRecord): Promise<string> {
  const before = doc.snapshot()
  try {
    const result = await doc.apply(record)
    assert.equal(result.applied, false, 'hostile input was applied')
    return 'duplicate'
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err
    assert.ok(REFUSALS.has((err as Error).name), `unexpected ${(err as Error).name}: ${(err as Error).message}`)
    return (err as Error).name
  } finally {
    assert.deepEqual(doc.snapshot(), before, 'the document is unchanged')
  }
}

function assertSameState (docs: GroupDoc[]): void {
  const [first, ...rest] = docs as [GroupDoc, ...GroupDoc[]]
  for (const d of rest) {
    assert.deepEqual(d.messages(), first.messages())
    assert.deepEqual(d.members(), first.members())
    assert.equal(d.name, first.name)
    assert.deepEqual(Y.decodeStateVector(d.stateVector()), Y.decodeStateVector(first.stateVector()))
  }
}

function ids (messages: GroupMessageView[]): string[] {
  return messages.map(m => m.text)
}

describe('GroupDoc: creation and views', () => {
  it('creates a group in one signed record: meta, the creator as admin, the others as members', async () => {
    const { alice, bob, carol, a, b, creation } = await trio()
    assert.equal(a.name, 'Hikers')
    assert.equal(a.createdBy, alice.peer)
    assert.equal(a.createdAt, T0)
    assert.equal(recordKey(creation), `${clientIdOf(alice.peer)}:0`)
    const members = a.members()
    assert.deepEqual(members.map(m => [m.peerId, m.role, m.addedBy, m.addedAt]).sort(),
      [[alice.peer, 'admin', alice.peer, T0], [bob.peer, 'member', alice.peer, T0], [carol.peer, 'member', alice.peer, T0]].sort())
    assert.equal(a.memberState(bob.peer), 'member')
    assert.equal(a.memberState((await identity()).peer), undefined)
    assert.ok(a.isMember(carol.peer))
    assert.deepEqual(b.members(), members)
    assert.equal(b.name, 'Hikers')
    assert.equal(a.size, 1)
  })

  it('refuses bad arguments to create', async () => {
    const alice = await identity()
    const group = newGroupId()
    await assert.rejects(GroupDoc.create({ group, self: alice.peer, privateKey: alice.key, name: '', members: [] }), { name: 'InvalidRequestError' })
    await assert.rejects(GroupDoc.create({ group, self: alice.peer, privateKey: alice.key, name: 'x'.repeat(101), members: [] }), { name: 'InvalidRequestError' })
    await assert.rejects(GroupDoc.create({ group, self: alice.peer, privateKey: alice.key, name: 'ok', members: ['nope' as PeerIdString] }), { name: 'InvalidPeerIdError' })
    const bob = await identity()
    await assert.rejects(GroupDoc.create({ group, self: bob.peer, privateKey: alice.key, name: 'ok', members: [] }), { name: 'InvalidRequestError' })
  })

  it('orders messages by (lamport, from, id) and pages with limit and before', async () => {
    const { a, b } = await trio()
    const records: GroupRecord[] = []
    records.push(await b.addMessage({ id: nextId(), text: 'b3', sentAt: T0, lamport: 3 }))
    records.push(await a.addMessage({ id: nextId(), text: 'a1', sentAt: T0, lamport: 1 }))
    records.push(await b.addMessage({ id: nextId(), text: 'b1', sentAt: T0, lamport: 1 }))
    records.push(await a.addMessage({ id: nextId(), text: 'a2', sentAt: T0, lamport: 2 }))
    await a.applyMany(records)
    await b.applyMany(records)
    const expected = [...a.messages()].sort((x, y) => x.lamport - y.lamport || (x.from < y.from ? -1 : x.from > y.from ? 1 : 0) || (x.id < y.id ? -1 : 1))
    assert.deepEqual(a.messages(), expected)
    assert.deepEqual(b.messages(), expected)
    assert.equal(a.messageCount, 4)
    assert.equal(a.lamport, 3)
    assert.deepEqual(a.messages(2), expected.slice(2))
    const third = expected[2] as GroupMessageView
    assert.deepEqual(a.messages(1, third.id), expected.slice(1, 2))
    assert.deepEqual(a.messages(undefined, third.id), expected.slice(0, 2))
    assert.deepEqual(a.messages(5, nextId()), [])
  })

  it('reopens from a snapshot and records, from records alone (any order), and from an old snapshot', async () => {
    const { group, alice, a, b, c, creation } = await trio()
    const log = [creation]
    const old = a.snapshot()
    for (let i = 0; i < 5; i++) log.push(await post(a, `a${i}`), await post(b, `b${i}`), await post(c, `c${i}`))
    log.push(await a.rename('Climbers'))
    await a.applyMany(log)
    const rng = new Rng(11)
    const reopened = [
      GroupDoc.open({ group, self: alice.peer, privateKey: alice.key, snapshot: a.snapshot(), records: log }),
      GroupDoc.open({ group, self: alice.peer, privateKey: alice.key, records: rng.shuffle(log) }),
      GroupDoc.open({ group, self: alice.peer, privateKey: alice.key, snapshot: old, records: rng.shuffle(log) })
    ]
    for (const d of reopened) {
      assertSameState([a, d])
      assert.equal(d.name, 'Climbers')
      assert.equal(d.size, log.length)
      assert.deepEqual(d.snapshot(), a.snapshot())
    }
    // and the reopened document keeps writing with its own client id, after its old clocks
    const more = await post(reopened[1] as GroupDoc, 'after reopen')
    assert.equal((await a.apply(more)).applied, true)
  })

  it('open drops a stored record whose dependencies never come, and keeps the rest', async () => {
    const { group, bob, b, creation } = await trio()
    const m1 = await post(b, 'one')
    const m2 = await post(b, 'two')
    const d = GroupDoc.open({ group, self: bob.peer, privateKey: bob.key, records: [creation, m2] })
    assert.equal(d.size, 1)
    assert.equal(d.messageCount, 0)
    assert.deepEqual(d.recordsSince(new Uint8Array([0])), [creation])
    assert.equal((await d.apply(m1)).applied, true)
    assert.equal((await d.apply(m2)).applied, true)
    assert.deepEqual(ids(d.messages()), ['one', 'two'])
    // its own records came back through apply: it still writes as itself, after them
    const three = await post(d, 'three')
    assert.equal(recordKey(three), `${clientIdOf(bob.peer)}:2`)
    assert.equal((await b.apply(m2)).applied, false)
    assert.equal((await b.apply(three)).applied, true)
  })
})

describe('GroupDoc: exchanging records', () => {
  it('three documents exchanging records in random orders converge', async () => {
    for (const seed of [1, 2, 3]) {
      const rng = new Rng(seed)
      const { group, bob, a, b, c } = await trio()
      const dave = await identity()
      const docs = [a, b, c]
      const writes: Array<() => Promise<GroupRecord>> = [
        async () => await a.setMember(dave.peer, 'member'),
        async () => await a.setMember(bob.peer, 'admin'),
        async () => await a.rename('Alpinists')
      ]
      for (let i = 0; i < 30; i++) {
        const doc = docs[rng.int(3)] as GroupDoc
        writes.push(async () => await post(doc, `m${i}`))
      }
      for (const w of writes) await w()
      if (b.isAdmin(bob.peer)) await b.rename('Bob was here')
      // gossip-like: each document gets every record of the others, shuffled, one by one
      const all = docs.flatMap(d => d.recordsSince(new Uint8Array([0])))
      for (const d of docs) {
        for (const r of rng.shuffle(all)) {
          try {
            await d.apply(r)
          } catch (err) {
            assert.ok(REFUSALS.has((err as Error).name), (err as Error).message)
          }
        }
      }
      // then sync rounds between random pairs until nothing changes
      for (let round = 0; round < 20; round++) {
        const x = docs[rng.int(3)] as GroupDoc
        const y = docs[rng.int(3)] as GroupDoc
        await y.applyMany(rng.shuffle(x.recordsSince(y.stateVector())))
      }
      for (const x of docs) for (const y of docs) await y.applyMany(x.recordsSince(y.stateVector()))
      assertSameState(docs)
      assert.equal(a.messageCount, 30)
      assert.ok(a.isMember(dave.peer))
      const d = await joined(group, dave, a.recordsSince(new Uint8Array([0])))
      assertSameState([a, d])
    }
  })

  it('ignores duplicates: the same record again is { applied: false }', async () => {
    const { a, b, creation } = await trio()
    const m = await post(b, 'hello')
    const first = await a.apply(m)
    assert.equal(first.applied, true)
    assert.deepEqual(ids(first.messages), ['hello'])
    const before = a.snapshot()
    assert.deepEqual(await a.apply(m), { applied: false, members: false, meta: false, messages: [] })
    assert.deepEqual(await a.apply(creation), { applied: false, members: false, meta: false, messages: [] })
    const many = await a.applyMany([m, m, creation])
    assert.equal(many.applied, 0)
    assert.equal(many.duplicates, 3)
    assert.deepEqual(a.snapshot(), before)
    assert.equal(a.messageCount, 1)
    // own records coming back change nothing either, nor the client id it writes with
    assert.equal((await b.apply(m)).applied, false)
  })

  it('apply checks the record signature unless the caller proved the author (authorVerified); the rules apply either way', async () => {
    const { bob, a, b } = await trio()
    const mallory = await identity()
    const m = await post(b, 'signed badly')
    const unsigned = { ...m, signature: (await signRecord(mallory.key, a.group, m.update)).signature }
    await assertRefused(a, unsigned, 'GroupSignatureError')
    // What GroupManager does for gossip that came out of bob's own sender-key ciphertext.
    assert.deepEqual(ids((await a.apply(unsigned, { authorVerified: true })).messages), ['signed badly'])
    // Proven author or not, a plain member still may not rename the group.
    const rename = await forge(b, bob, y => y.getMap('meta').set('name', 'mine'))
    await assert.rejects(a.apply(rename, { authorVerified: true }), { name: 'NotGroupAdminError' })
    assert.equal(a.name, 'Hikers')
  })

  it('reports what changed', async () => {
    const { a, b } = await trio()
    const dave = await identity()
    const add = await a.setMember(dave.peer, 'member')
    const rename = await a.rename('New name')
    const r1 = await b.apply(add)
    assert.deepEqual({ ...r1, messages: r1.messages.length }, { applied: true, members: true, meta: false, messages: 0 })
    const r2 = await b.apply(rename)
    assert.deepEqual({ ...r2, messages: r2.messages.length }, { applied: true, members: false, meta: true, messages: 0 })
    assert.equal(b.name, 'New name')
  })

  it('a missing dependency is refused, then accepted after it', async () => {
    const { group, alice, a, b, c, creation } = await trio()
    const m1 = await post(b, 'one')
    const m2 = await post(b, 'two')
    await assertRefused(a, m2, 'MissingDependencyError')
    assert.equal((await a.apply(m1)).applied, true)
    assert.equal((await a.apply(m2)).applied, true)
    // an overwrite of an item the document does not have yet
    const dave = await identity()
    const add = await a.setMember(dave.peer, 'member')
    const daveAdmin = await a.setMember(dave.peer, 'admin')
    await assertRefused(c, daveAdmin, 'MissingDependencyError')
    await c.apply(add)
    assert.equal((await c.apply(daveAdmin)).applied, true)
    // an empty document refuses everything but the creation
    const empty = GroupDoc.open({ group, self: alice.peer, privateKey: alice.key, records: [] })
    await assertRefused(empty, m1, 'MissingDependencyError')
    const batch = await empty.applyMany([m2, m1, add, daveAdmin, creation])
    assert.equal(batch.applied, 5)
    assert.deepEqual(batch.refused, [])
    assert.deepEqual(ids(batch.messages), ['one', 'two'])
  })

  it('each member\'s records form a hash chain (prev), also across a reopen', async () => {
    const { group, bob, a, b, creation } = await trio()
    assert.equal(creation.prev, undefined)
    const first = await post(b, 'first of bob')
    assert.equal(first.prev, undefined, 'bob\'s first record starts his chain')
    const second = await post(b, 'second')
    assert.deepEqual(second.prev, recordHash(first))
    const next = await post(a, 'alice again')
    assert.deepEqual(next.prev, recordHash(creation))
    // Bob's records applied elsewhere do not enter alice's chain.
    await a.applyMany([first, second])
    assert.deepEqual((await post(a, 'and again')).prev, recordHash(next))
    // Reopened from its stored records, bob's document goes on from his newest.
    const reopened = GroupDoc.open({ group, self: bob.peer, privateKey: bob.key, records: [creation, first, second] })
    assert.deepEqual((await post(reopened, 'third')).prev, recordHash(second))
  })

  it('applyMany takes a catch-up batch in any order', async () => {
    const { group, carol, a, b } = await trio()
    for (let i = 0; i < 100; i++) await a.apply(await post(i % 3 === 0 ? b : a, `m${i}`))
    const all = a.recordsSince(new Uint8Array([0]))
    const rng = new Rng(9)
    for (const order of [[...all].reverse(), rng.shuffle(all)]) {
      const fresh = GroupDoc.open({ group, self: carol.peer, privateKey: carol.key, records: [] })
      const result = await fresh.applyMany(order)
      assert.deepEqual(result.refused, [])
      assert.equal(result.applied, all.length)
      assert.equal(result.messages.length, 100)
      assert.deepEqual(result.messages, a.messages())
      assertSameState([a, fresh])
    }
  })

  it('applyMany applies the good records of a batch and lists the refused ones, each with its error', async () => {
    const { bob, a, b, c } = await trio()
    const mallory = await identity()
    const good1 = await post(b, 'one')
    const hostile = await forge(b, bob, y => y.getMap('meta').set('name', 'mine'))
    const forged = { ...(await signRecord(mallory.key, a.group, (await post(c, 'x')).update)), author: c.self }
    const good2 = await post(c, 'two')
    const before = a.snapshot()
    const result = await a.applyMany([good1, hostile, { ...good1, update: new Uint8Array([1, 2, 3]) }, forged, good2])
    assert.equal(result.applied, 1)
    assert.deepEqual(result.refused.map(r => r.error.name).sort(), ['GroupSignatureError', 'InvalidGroupRecordError', 'MissingDependencyError', 'NotGroupAdminError'])
    assert.deepEqual(ids(result.messages), ['one'])
    assert.notDeepEqual(a.snapshot(), before)
    assert.equal(a.name, 'Hikers')
    // bob signing another record for clocks he already used (equivocation) is refused
    const twin = await forge(c, bob, y => y.getMap('messages').set(nextId(), { from: bob.peer, text: 'twin', sentAt: T0, lamport: 1 }))
    await assertRefused(a, twin, 'GroupUpdateRefusedError', 'conflict')
  })

  it('recordsSince serves exactly what a state vector misses, in an order that applies', async () => {
    const { group, bob, a, b, c, creation } = await trio()
    const early = await joined(group, bob, [creation])
    for (let i = 0; i < 4; i++) {
      await a.applyMany([await post(b, `b${i}`), await post(c, `c${i}`)])
      if (i === 1) await early.applyMany(a.recordsSince(early.stateVector()))
    }
    assert.deepEqual(a.recordsSince(a.stateVector()), [])
    const all = a.recordsSince(new Uint8Array([0]))
    assert.equal(all.length, 9)
    assert.equal(all[0], creation)
    const missing = a.recordsSince(early.stateVector())
    assert.deepEqual(missing.map(r => r.update), all.slice(5).map(r => r.update))
    const result = await early.applyMany(missing)
    assert.equal(result.applied, 4)
    assertSameState([a, early])
    // a vector naming only one client: everything of the others
    const onlyB = new Map([[clientIdOf(bob.peer), 2]])
    const e = encoding.createEncoder()
    encoding.writeVarUint(e, onlyB.size)
    for (const [client, clock] of onlyB) {
      encoding.writeVarUint(e, client)
      encoding.writeVarUint(e, clock)
    }
    const partial = a.recordsSince(encoding.toUint8Array(e))
    assert.equal(partial.length, 1 + 4 + 2)
  })

  it('recordsSince refuses a garbage state vector with InvalidStateVectorError', async () => {
    const { a } = await trio()
    const good = a.stateVector()
    const cases = [good.subarray(0, good.byteLength - 1), new Uint8Array([...good, 0]), new Uint8Array([200, 200, 200, 200, 200, 200, 200, 200, 200])]
    const rng = new Rng(7)
    for (let i = 0; i < 100; i++) cases.push(rng.bytes(1 + rng.int(20)))
    for (const sv of cases) {
      try {
        a.recordsSince(sv)
      } catch (err) {
        assert.equal((err as Error).name, 'InvalidStateVectorError')
      }
    }
    for (const sv of cases.slice(0, 3)) assert.throws(() => a.recordsSince(sv), { name: 'InvalidStateVectorError' })
  })

  it('recordsSince takes zero bytes as "has nothing" (group-sync\'s empty vector): every record', async () => {
    const { a } = await trio()
    assert.deepEqual(a.recordsSince(new Uint8Array(0)), a.recordsSince(Y.encodeStateVector(new Y.Doc())))
    assert.ok(a.recordsSince(new Uint8Array(0)).length > 0)
  })
})

describe('GroupDoc: the rules', () => {
  it('a removed member cannot post; a member who left cannot either', async () => {
    const { bob, carol, a, b, c } = await trio()
    const removal = await a.removeMember(bob.peer)
    const late = await post(b, 'still here?')
    assert.equal((await c.apply(removal)).members, true)
    await assertRefused(a, late, 'NotGroupMemberError', 'not-member')
    await assertRefused(c, late, 'NotGroupMemberError', 'not-member')
    assert.equal(a.memberState(bob.peer), 'removed')
    assert.ok(!a.members().some(m => m.peerId === bob.peer))
    const left = await c.leave()
    assert.equal(c.memberState(carol.peer), 'left')
    await assert.rejects(post(c, 'after leaving'), { name: 'NotGroupMemberError' })
    await assert.rejects(c.leave(), { name: 'NotGroupMemberError' })
    await a.apply(left)
    assert.equal(a.memberState(carol.peer), 'left')
    assert.deepEqual(a.members().map(m => m.peerId), [a.self])
    // an admin can add them back
    await a.setMember(carol.peer, 'member')
    assert.ok(a.isMember(carol.peer))
  })

  it('messages a removed member wrote before the admin removed them go in wherever the removal arrives first', async () => {
    const { group, bob, a, b, c, creation } = await trio()
    const early = await post(b, 'seen by the admin')
    await a.apply(early)
    const removal = await a.removeMember(bob.peer)
    const late = await post(b, 'not seen by the admin')
    // c gets the removal first (gossip), then bob's earlier message (mailbox or sync)
    await c.apply(removal)
    assert.equal((await c.apply(early)).applied, true)
    await assertRefused(c, late, 'NotGroupMemberError', 'not-member')
    const d = await joined(group, await identity(), [])
    const batch = await d.applyMany([creation, removal, early, late])
    assert.equal(batch.applied, 3)
    assert.deepEqual(batch.refused.map(r => r.error.name), ['NotGroupMemberError'])
    assertSameState([a, c, d])
  })

  it('local changes check the rules first and throw the named errors', async () => {
    const { bob, a, b } = await trio()
    const dave = await identity()
    await assert.rejects(b.setMember(dave.peer, 'member'), { name: 'NotGroupAdminError' })
    await assert.rejects(b.removeMember(a.self), { name: 'NotGroupAdminError' })
    await assert.rejects(b.rename('mine now'), { name: 'NotGroupAdminError' })
    await assert.rejects(a.removeMember(dave.peer), { name: 'UnknownGroupMemberError' })
    await assert.rejects(a.setMember('nope' as PeerIdString, 'member'), { name: 'InvalidPeerIdError' })
    await assert.rejects(a.rename(' '), { name: 'InvalidRequestError' })
    await assert.rejects(a.addMessage({ id: 'x' as MessageId, text: 'hi', sentAt: T0, lamport: 1 }), { name: 'InvalidRequestError' })
    await assert.rejects(a.addMessage({ id: nextId(), text: 'x'.repeat(MAX_GROUP_TEXT_BYTES + 1), sentAt: T0, lamport: 1 }), { name: 'MessageTooLargeError' })
    const id = nextId()
    await a.addMessage({ id, text: 'once', sentAt: T0, lamport: 1 })
    await assert.rejects(a.addMessage({ id, text: 'twice', sentAt: T0, lamport: 2 }), { name: 'InvalidRequestError' })
    assert.equal(b.memberState(bob.peer), 'member')
    assert.equal(b.size, 1)
  })

  it('refuses hostile records and leaves the document unchanged', async () => {
    const { alice, bob, a, b, c } = await trio()
    const mallory = await identity()
    const aliceMsg = await post(a, 'from alice')
    await b.apply(aliceMsg)
    await c.apply(aliceMsg)
    const aliceMsgId = (a.messages()[0] as GroupMessageView).id
    const good = await forge(a, bob, y => y.getMap('messages').set(nextId(), { from: bob.peer, text: 'ok', sentAt: T0, lamport: 2 }))
    const message = (from: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ from, text: 'hi', sentAt: T0, lamport: 2, ...extra })
    const bobClient = clientIdOf(bob.peer)
    const aliceY = new Y.Doc()
    Y.applyUpdate(aliceY, a.snapshot())
    const aliceItem = Y.getState(aliceY.store, clientIdOf(alice.peer)) - 1 // alice's message

    const cases: Array<[string, () => Promise<GroupRecord>, string, string?]> = [
      ['empty update', async () => ({ ...good, update: new Uint8Array() }), 'InvalidGroupRecordError'],
      ['oversized update', async () => await signRecord(bob.key, a.group, new Uint8Array(MAX_RECORD_BYTES + 1)), 'InvalidGroupRecordError'],
      ['signed by someone else', async () => ({ ...(await signRecord(mallory.key, a.group, good.update)), author: bob.peer }), 'GroupSignatureError'],
      ['another group', async () => await signRecord(bob.key, c.group === a.group ? newGroupId() : a.group, good.update), 'GroupUpdateRefusedError', 'wrong-group'],
      ['a non-member\'s message', async () => await forge(a, mallory, y => y.getMap('messages').set(nextId(), message(mallory.peer))), 'NotGroupMemberError', 'unknown-author'],
      ['a member adds a member', async () => await forge(a, bob, y => y.getMap('members').set(mallory.peer, { role: 'member', addedBy: bob.peer, addedAt: T0 })), 'NotGroupAdminError'],
      ['a member removes the admin', async () => await forge(a, bob, y => y.getMap('members').set(alice.peer, { role: 'removed', by: bob.peer, at: T0, clock: 0 })), 'NotGroupAdminError'],
      ['a member promotes itself', async () => await forge(a, bob, y => y.getMap('members').set(bob.peer, { role: 'admin', addedBy: bob.peer, addedAt: T0 })), 'NotGroupAdminError'],
      ['a member renames', async () => await forge(a, bob, y => y.getMap('meta').set('name', 'mine')), 'NotGroupAdminError'],
      ['a member makes another leave', async () => await forge(a, bob, y => y.getMap('members').set(alice.peer, { role: 'left', at: T0 })), 'GroupUpdateRefusedError', 'invalid-value'],
      ['an admin rewrites createdBy', async () => await forge(a, alice, y => y.getMap('meta').set('createdBy', bob.peer)), 'GroupUpdateRefusedError', 'invalid-value'],
      ['an admin sets an unknown meta key', async () => await forge(a, alice, y => y.getMap('meta').set('topic', 'x')), 'GroupUpdateRefusedError', 'invalid-value'],
      ['an admin adds a member in another\'s name', async () => await forge(a, alice, y => y.getMap('members').set(mallory.peer, { role: 'member', addedBy: bob.peer, addedAt: T0 })), 'GroupUpdateRefusedError', 'invalid-value'],
      ['an admin adds a non-peer', async () => await forge(a, alice, y => y.getMap('members').set('not-a-peer', { role: 'member', addedBy: alice.peer, addedAt: T0 })), 'GroupUpdateRefusedError', 'invalid-value'],
      ['a bad role', async () => await forge(a, alice, y => y.getMap('members').set(mallory.peer, { role: 'owner', addedBy: alice.peer, addedAt: T0 })), 'GroupUpdateRefusedError', 'invalid-value'],
      ['a name too long', async () => await forge(a, alice, y => y.getMap('meta').set('name', 'n'.repeat(101))), 'GroupUpdateRefusedError', 'invalid-value'],
      ['a member rewrites another member\'s message', async () => await forge(a, bob, y => y.getMap('messages').set(aliceMsgId, message(bob.peer))), 'GroupUpdateRefusedError', 'foreign-message'],
      ['a message in another member\'s name', async () => await forge(a, bob, y => y.getMap('messages').set(nextId(), message(alice.peer))), 'GroupUpdateRefusedError', 'invalid-value'],
      ['a message with extra fields', async () => await forge(a, bob, y => y.getMap('messages').set(nextId(), message(bob.peer, { admin: true }))), 'GroupUpdateRefusedError', 'invalid-value'],
      ['a message with a bad id', async () => await forge(a, bob, y => y.getMap('messages').set('hello', message(bob.peer))), 'GroupUpdateRefusedError', 'invalid-value'],
      ['a message over the text limit', async () => await forge(a, bob, y => y.getMap('messages').set(nextId(), message(bob.peer, { text: 'x'.repeat(MAX_GROUP_TEXT_BYTES + 1) }))), 'GroupUpdateRefusedError', 'invalid-value'],
      ['a message with a prototype', async () => await forge(a, bob, y => y.getMap('messages').set(nextId(), JSON.parse('{"__proto__":{"x":1},"from":"' + bob.peer + '","text":"t","sentAt":1,"lamport":2}') as Record<string, unknown>)), 'GroupUpdateRefusedError', 'invalid-value'],
      ['a struct with a foreign client id', async () => await forge(a, bob, y => y.getMap('messages').set(nextId(), message(bob.peer)), clientIdOf(alice.peer)), 'GroupUpdateRefusedError', 'invalid-struct'],
      ['a struct with a random client id', async () => await forge(a, bob, y => y.getMap('messages').set(nextId(), message(bob.peer)), 4242), 'GroupUpdateRefusedError', 'invalid-struct'],
      ['a nested map', async () => await forge(a, bob, y => y.getMap('messages').set(nextId(), new Y.Map())), 'GroupUpdateRefusedError', 'invalid-struct'],
      ['a nested text', async () => await forge(a, bob, y => y.getMap('messages').set(nextId(), new Y.Text('hi'))), 'GroupUpdateRefusedError', 'invalid-struct'],
      ['an unknown root map', async () => await forge(a, bob, y => y.getMap('evil').set('x', 1)), 'GroupUpdateRefusedError', 'invalid-struct'],
      ['a root array named messages', async () => await forge(a, bob, y => y.getArray('other').insert(0, [1])), 'GroupUpdateRefusedError', 'invalid-struct'],
      ['a string content', async () => await forge(a, bob, y => y.getText('messages').insert(0, 'x')), 'GroupUpdateRefusedError', 'invalid-struct'],
      ['a binary value', async () => await forge(a, bob, y => y.getMap('messages').set(nextId(), new Uint8Array([1]))), 'GroupUpdateRefusedError', 'invalid-struct'],
      ['a binary inside a value', async () => await forge(a, bob, y => y.getMap('messages').set(nextId(), message(bob.peer, { text: new Uint8Array([1]) }))), 'GroupUpdateRefusedError', 'invalid-value'],
      ['a GC struct', async () => await signRecord(bob.key, a.group, rawUpdate(bobClient, 0, 1, e => { encoding.writeUint8(e, 0); encoding.writeVarUint(e, 1) })), 'GroupUpdateRefusedError', 'invalid-struct'],
      ['a Skip struct', async () => await signRecord(bob.key, a.group, rawUpdate(bobClient, 0, 1, e => { encoding.writeUint8(e, 10); encoding.writeVarUint(e, 1) })), 'GroupUpdateRefusedError', 'invalid-struct'],
      ['a huge Skip struct', async () => await signRecord(bob.key, a.group, rawUpdate(bobClient, 0, 1, e => { encoding.writeUint8(e, 10); encoding.writeVarUint(e, 2 ** 40) })), 'GroupUpdateRefusedError', 'invalid-struct'],
      ['two client sections', async () => await signRecord(bob.key, a.group, Y.mergeUpdates([good.update, (await forge(a, alice, y => y.getMap('meta').set('name', 'x'))).update])), 'InvalidGroupRecordError'],
      ['a struct beyond the author\'s clock', async () => await signRecord(bob.key, a.group, rawUpdate(bobClient, 5, 1, e => { encoding.writeUint8(e, 0); encoding.writeVarUint(e, 1) })), 'MissingDependencyError'],
      ['a delete set naming an item it does not overwrite', async () => await signRecord(bob.key, a.group, Y.mergeUpdates([good.update, deleteOnly([[clientIdOf(alice.peer), aliceItem, 1]])])), 'GroupUpdateRefusedError', 'invalid-delete'],
      ['a delete set with a huge range', async () => await signRecord(bob.key, a.group, Y.mergeUpdates([good.update, deleteOnly([[clientIdOf(alice.peer), 0, 2 ** 40]])])), 'GroupUpdateRefusedError', 'invalid-delete'],
      ['a creation record on a created group', async () => await forge(a, alice, y => { y.getMap('meta').set('createdBy', alice.peer); y.getMap('meta').set('name', 'again'); y.getMap('meta').set('createdAt', T0) }), 'GroupUpdateRefusedError', 'invalid-value']
    ]
    for (const [what, make, name, reason] of cases) {
      const record = await make()
      await test(what, async () => await assertRefused(b, record, name, reason))
    }
    // the honest record still goes in after all that
    assert.equal((await b.apply(good)).applied, true)
  })

  it('an overwrite by the same member is fine; a member\'s delete set may name only what it overwrites', async () => {
    const { bob, a, b } = await trio()
    const m = await post(b, 'first')
    await a.apply(m)
    const id = (b.messages()[0] as GroupMessageView).id
    const edit = await forge(a, bob, y => y.getMap('messages').set(id, { from: bob.peer, text: 'edited', sentAt: T0, lamport: 1 }))
    assert.equal((await a.apply(edit)).applied, true)
    assert.deepEqual(ids(a.messages()), ['edited'])
    assert.equal(a.messageCount, 1)
  })

  it('the empty document takes only a proper creation, and only from the pinned creator', async () => {
    const group = newGroupId()
    const [alice, bob, mallory] = [await identity(), await identity(), await identity()] as [Peer, Peer, Peer]
    const { record: creation } = await GroupDoc.create({ group, self: alice.peer, privateKey: alice.key, name: 'Real', members: [bob.peer] })
    const { record: fake } = await GroupDoc.create({ group, self: mallory.peer, privateKey: mallory.key, name: 'Fake', members: [bob.peer] })
    const pinned = GroupDoc.open({ group, self: bob.peer, privateKey: bob.key, records: [], creator: alice.peer })
    await assertRefused(pinned, fake, 'GroupUpdateRefusedError', 'not-creation')
    assert.equal((await pinned.apply(creation)).applied, true)
    const empty = GroupDoc.open({ group, self: bob.peer, privateKey: bob.key, records: [] })
    const fakeCreation = async (createdBy: string, role: string): Promise<GroupRecord> => await forge(empty, mallory, y => {
      y.getMap('meta').set('name', 'x')
      y.getMap('meta').set('createdBy', createdBy)
      y.getMap('meta').set('createdAt', T0)
      y.getMap('members').set(mallory.peer, { role, addedBy: mallory.peer, addedAt: T0 })
    })
    await assertRefused(empty, await fakeCreation(mallory.peer, 'member'), 'GroupUpdateRefusedError', 'not-creation')
    await assertRefused(empty, await fakeCreation(alice.peer, 'admin'), 'GroupUpdateRefusedError', 'not-creation')
    await assert.rejects(post(empty, 'nobody here'), { name: 'NotGroupMemberError' })
  })

  it('survives random, truncated and mutated updates with named refusals only', async () => {
    const { bob, a, b } = await trio()
    const good = await forge(a, bob, y => y.getMap('messages').set(nextId(), { from: bob.peer, text: 'hello there', sentAt: T0, lamport: 2 }))
    const rng = new Rng(42)
    const seen = new Map<string, number>()
    const count = (name: string): void => { seen.set(name, (seen.get(name) ?? 0) + 1) }
    for (let cut = 1; cut < good.update.byteLength; cut++) {
      count(await assertNotApplied(b, await signRecord(bob.key, a.group, good.update.subarray(0, cut))))
    }
    for (let i = 0; i < 300; i++) {
      const bytes = rng.bytes(1 + rng.int(i < 150 ? 16 : 200))
      if (i % 2 === 0) bytes[0] = 1 // one client section: gets further into the decoder
      count(await assertNotApplied(b, await signRecord(bob.key, a.group, bytes)))
    }
    let applied = 0
    for (let i = 0; i < 300; i++) {
      const bytes = good.update.slice()
      for (let k = 1 + rng.int(3); k > 0; k--) bytes[rng.int(bytes.byteLength)] = rng.int(256)
      const copy = GroupDoc.open({ group: b.group, self: bob.peer, privateKey: bob.key, snapshot: b.snapshot(), records: b.recordsSince(new Uint8Array([0])) })
      const record = await signRecord(bob.key, a.group, bytes)
      try {
        const result = await copy.apply(record)
        if (result.applied) {
          applied++
          for (const m of copy.messages()) assert.ok(copy.isMember(m.from) && m.from === bob.peer)
        }
      } catch (err) {
        assert.ok(REFUSALS.has((err as Error).name), `${(err as Error).name}: ${(err as Error).message}`)
        assert.deepEqual(copy.snapshot(), b.snapshot())
        count((err as Error).name)
      }
    }
    assert.ok(seen.get('InvalidGroupRecordError') !== undefined)
    assert.ok(applied < 300)
  })
})

/** A V1 update with no structs and this delete set. */
function deleteOnly (ranges: Array<[number, number, number]>): Uint8Array {
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, 0)
  encoding.writeVarUint(e, ranges.length)
  for (const [c, k, len] of ranges) {
    encoding.writeVarUint(e, c)
    encoding.writeVarUint(e, 1)
    encoding.writeVarUint(e, k)
    encoding.writeVarUint(e, len)
  }
  return encoding.toUint8Array(e)
}

async function test (what: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn()
  } catch (err) {
    if (err instanceof Error) err.message = `${what}: ${err.message}`
    throw err
  }
}
