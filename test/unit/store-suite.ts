import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import { afterEach, before, beforeEach, describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ulidFactory, type MessageId, type PeerIdString } from '../../core/ids.js'
import type { Contact, MessageRecord, OutboxRecord, Store } from '../../core/store/types.js'
import { Rng } from '../helpers/prng.js'

/**
 * What a suite run needs from one Store implementation:
 * - `store`: a new, empty, already opened store;
 * - `reopen` (optional): close the current store and return a new opened one over the same
 *   data (proves persistence); the suite then uses only the returned store;
 * - `cleanup`: close whatever store is open and remove anything the fixture made.
 */
export interface StoreFixture {
  store: Store
  reopen?: () => Promise<Store>
  cleanup: () => Promise<void>
}

interface Peers {
  self: PeerIdString
  /** Three other peers, a < b < c in string order. */
  a: PeerIdString
  b: PeerIdString
  c: PeerIdString
  d: PeerIdString
}

const BASE_TIME = 1_700_000_000_000

function compareStrings (x: string, y: string): number {
  return x < y ? -1 : x > y ? 1 : 0
}

/** The order the Store contract promises inside a conversation: (lamport, sender, id). */
function byConversationOrder (x: MessageRecord, y: MessageRecord): number {
  return x.lamport - y.lamport || compareStrings(x.from, y.from) || compareStrings(x.id, y.id)
}

function ids (records: ReadonlyArray<{ id: MessageId }>): MessageId[] {
  return records.map((r) => r.id)
}

async function newPeerId (): Promise<PeerIdString> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString() as PeerIdString
}

/**
 * The one contract suite for `Store` (core/store/types.ts). Every implementation runs it.
 *
 * @example
 * runStoreSuite('MemoryStore', async () => {
 *   const store = new MemoryStore()
 *   await store.open()
 *   return { store, cleanup: async () => await store.close() }
 * })
 */
export function runStoreSuite (name: string, make: () => Promise<StoreFixture>): void {
  describe(`Store contract: ${name}`, () => {
    let peers: Peers
    let fixture: StoreFixture
    let store: Store
    const nextId = ulidFactory(() => BASE_TIME)

    before(async () => {
      const [a, b, c, d] = (await Promise.all([newPeerId(), newPeerId(), newPeerId(), newPeerId()])).sort(compareStrings)
      assert.ok(a !== undefined && b !== undefined && c !== undefined && d !== undefined)
      peers = { self: await newPeerId(), a, b, c, d }
    })

    beforeEach(async () => {
      fixture = await make()
      store = fixture.store
    })

    afterEach(async () => {
      await fixture.cleanup()
    })

    /** Close and reopen over the same data, or skip the test for stores without a disk. */
    async function reopenOrSkip (t: TestContext): Promise<boolean> {
      if (fixture.reopen === undefined) {
        t.skip(`${name} has no reopen: nothing is persisted`)
        return false
      }
      store = await fixture.reopen()
      return true
    }

    function incoming (from: PeerIdString, lamport: number, text = `in ${lamport}`): MessageRecord {
      return {
        id: nextId(),
        conversation: from,
        from,
        direction: 'in',
        text,
        lamport,
        sentAt: BASE_TIME + lamport,
        receivedAt: BASE_TIME + lamport + 5,
        status: 'received'
      }
    }

    function outgoing (to: PeerIdString, lamport: number, text = `out ${lamport}`): MessageRecord {
      return {
        id: nextId(),
        conversation: to,
        from: peers.self,
        direction: 'out',
        text,
        lamport,
        sentAt: BASE_TIME + lamport,
        status: 'pending'
      }
    }

    function outboxFor (m: MessageRecord, frame?: Uint8Array<ArrayBuffer>): OutboxRecord {
      return {
        id: m.id,
        to: m.conversation,
        frame: frame ?? new TextEncoder().encode(`frame for ${m.id}`),
        createdAt: m.sentAt,
        expiresAt: m.sentAt + 7 * 24 * 3600 * 1000
      }
    }

    function contact (peerId: PeerIdString, name: string): Contact {
      return { peerId, name, addrs: ['/ip4/127.0.0.1/tcp/4001', '/ip4/10.0.0.2/tcp/4002/ws'], origin: 'invite', addedAt: BASE_TIME }
    }

    async function send (m: MessageRecord, clock = m.lamport): Promise<void> {
      await store.saveOutgoing(m, outboxFor(m), clock)
    }

    async function allHistory (conversation: PeerIdString): Promise<MessageRecord[]> {
      return await store.history(conversation, { limit: 1_000_000 })
    }

    describe('a new store', () => {
      it('has clock 0 and nothing stored', async () => {
        assert.equal(await store.getClock(), 0)
        assert.equal(await store.getSetting('name'), undefined)
        assert.deepEqual(await store.listContacts(), [])
        assert.equal(await store.getContact(peers.a), undefined)
        assert.deepEqual(await store.listConversations(), [])
        assert.deepEqual(await store.listOutbox(), [])
        assert.deepEqual(await store.history(peers.a, { limit: 10 }), [])
        assert.equal(await store.getMessage(nextId()), undefined)
      })
    })

    describe('clock', () => {
      it('is stored by saveIncoming and saveOutgoing and never decreases', async () => {
        await store.saveIncoming([incoming(peers.a, 10)], 10)
        assert.equal(await store.getClock(), 10)
        await store.saveIncoming([incoming(peers.a, 3)], 3)
        assert.equal(await store.getClock(), 10, 'a lower clock after a higher one must not lower it')
        await send(outgoing(peers.b, 7), 7)
        assert.equal(await store.getClock(), 10)
        await send(outgoing(peers.b, 12), 12)
        assert.equal(await store.getClock(), 12)
        await store.saveIncoming([incoming(peers.c, 30)], 30)
        assert.equal(await store.getClock(), 30)
        await store.saveIncoming([incoming(peers.c, 1)], 1)
        assert.equal(await store.getClock(), 30)
      })

      it('is persisted and never decreases across a reopen', async (t) => {
        await store.saveIncoming([incoming(peers.a, 40)], 40)
        await send(outgoing(peers.a, 41), 41)
        if (!await reopenOrSkip(t)) return
        assert.equal(await store.getClock(), 41)
        await store.saveIncoming([incoming(peers.a, 2)], 2)
        assert.equal(await store.getClock(), 41)
        if (!await reopenOrSkip(t)) return
        assert.equal(await store.getClock(), 41)
      })

      it('does not decrease when a lower clock is the first write after a reopen', async (t) => {
        await store.saveIncoming([incoming(peers.a, 50)], 50)
        if (!await reopenOrSkip(t)) return
        // No getClock() first: the store itself must not let the persisted clock go back.
        await store.saveIncoming([incoming(peers.b, 5)], 5)
        await send(outgoing(peers.b, 6), 6)
        assert.equal(await store.getClock(), 50)
        if (!await reopenOrSkip(t)) return
        assert.equal(await store.getClock(), 50)
      })
    })

    describe('settings', () => {
      it('are put, overwritten and read back per key', async () => {
        await store.putSetting('name', 'Ada')
        await store.putSetting('theme', 'dark')
        await store.putSetting('empty', '')
        assert.equal(await store.getSetting('name'), 'Ada')
        assert.equal(await store.getSetting('theme'), 'dark')
        assert.equal(await store.getSetting('empty'), '')
        assert.equal(await store.getSetting('missing'), undefined)
        await store.putSetting('name', 'Ada Lovelace ✓')
        assert.equal(await store.getSetting('name'), 'Ada Lovelace ✓')
        assert.equal(await store.getSetting('theme'), 'dark')
      })

      it('are not confused with the clock', async () => {
        await store.putSetting('clock', '999')
        assert.equal(await store.getClock(), 0)
        await store.saveIncoming([incoming(peers.a, 4)], 4)
        assert.equal(await store.getSetting('clock'), '999')
        assert.equal(await store.getClock(), 4)
      })
    })

    describe('contacts', () => {
      it('are put, got, listed, replaced and deleted', async () => {
        const ca = contact(peers.a, 'Alice')
        const cb: Contact = { ...contact(peers.b, 'Bob'), origin: 'inbound', addrs: [] }
        await store.putContact(cb)
        await store.putContact(ca)
        assert.deepEqual(await store.getContact(peers.a), ca)
        assert.deepEqual(await store.getContact(peers.b), cb)
        assert.equal(await store.getContact(peers.c), undefined)
        const listed = (await store.listContacts()).sort((x, y) => compareStrings(x.peerId, y.peerId))
        assert.deepEqual(listed, [ca, cb])

        const renamed: Contact = { ...ca, name: 'Alice L.', addrs: ['/ip4/192.168.1.9/tcp/9999'] }
        await store.putContact(renamed)
        assert.deepEqual(await store.getContact(peers.a), renamed)
        assert.equal((await store.listContacts()).length, 2, 'put on an existing peer id replaces it')

        await store.deleteContact(peers.a)
        assert.equal(await store.getContact(peers.a), undefined)
        assert.deepEqual(await store.listContacts(), [cb])
        await store.deleteContact(peers.c) // unknown: no error
        await store.deleteContact(peers.a) // already gone: no error
        assert.deepEqual(await store.listContacts(), [cb])
      })

      it('keep a profile and its avatar with the contact: written together, replaced, kept, deleted with it', async () => {
        const avatar = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3])
        const withProfile: Contact = {
          ...contact(peers.a, 'Alice'),
          named: true,
          profile: { version: 1_700_000_000_000, name: 'Alice Liddell', avatar: { mime: 'image/png', hash: '0123456789abcdef' } },
          profileSent: 1_700_000_000_001
        }
        assert.equal(await store.getAvatar(peers.a), undefined)
        await store.putContact(withProfile, avatar)
        avatar[4] = 99 // the store took a copy
        assert.deepEqual(await store.getContact(peers.a), withProfile)
        assert.deepEqual(await store.getAvatar(peers.a), Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]))

        // Without an avatar argument the stored one stays; with null it goes.
        const renamed: Contact = { ...withProfile, name: 'Al' }
        await store.putContact(renamed)
        assert.deepEqual(await store.getAvatar(peers.a), Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]))
        await store.putContact({ ...renamed, profile: { version: 1_700_000_000_002, name: 'Alice' } }, null)
        assert.equal(await store.getAvatar(peers.a), undefined)
        assert.equal((await store.getContact(peers.a))?.profile?.avatar, undefined)

        await store.putContact(withProfile, Uint8Array.from([9, 9]))
        await store.putContact(contact(peers.b, 'Bob'), Uint8Array.from([7]))
        if (fixture.reopen !== undefined) { // LevelStore: from disk
          store = await fixture.reopen()
          assert.deepEqual(await store.getContact(peers.a), withProfile)
          assert.deepEqual(await store.getAvatar(peers.a), Uint8Array.from([9, 9]))
        }
        await store.deleteContact(peers.a)
        assert.equal(await store.getAvatar(peers.a), undefined, 'deleting a contact deletes its avatar')
        assert.deepEqual(await store.getAvatar(peers.b), Uint8Array.from([7]), 'others keep theirs')
      })
    })

    describe('saveOutgoing', () => {
      it('stores the message and its outbox entry with identical frame bytes', async () => {
        const m = outgoing(peers.a, 1, 'hello')
        const frame = new Uint8Array(300)
        for (let i = 0; i < frame.length; i++) frame[i] = (i * 7) % 256 // every byte value, incl. 0 and 255
        const entry = outboxFor(m, frame)
        await store.saveOutgoing(m, entry, 1)

        assert.deepEqual(await store.getMessage(m.id), m)
        assert.deepEqual(await store.history(peers.a, { limit: 10 }), [m])
        const outbox = await store.listOutbox()
        assert.equal(outbox.length, 1)
        assert.deepEqual(outbox[0], entry)
        assert.ok(outbox[0]?.frame instanceof Uint8Array)
        assert.deepEqual([...(outbox[0]?.frame ?? [])], [...frame])
        assert.deepEqual(await store.listConversations(), [{ peerId: peers.a, last: m }])
      })

      it('lists the outbox ordered per recipient by id, whatever the write order', async () => {
        const rng = new Rng(7)
        const messages: MessageRecord[] = []
        for (let i = 0; i < 30; i++) messages.push(outgoing([peers.a, peers.b, peers.c][i % 3] as PeerIdString, i + 1))
        for (const m of rng.shuffle(messages)) await send(m)

        const outbox = await store.listOutbox()
        assert.equal(outbox.length, messages.length)
        assert.deepEqual(new Set(ids(outbox)), new Set(ids(messages)))
        for (const peer of [peers.a, peers.b, peers.c]) {
          const forPeer = outbox.filter((o) => o.to === peer)
          const expected = ids(messages.filter((m) => m.conversation === peer)).sort(compareStrings)
          assert.deepEqual(ids(forPeer), expected, 'oldest (smallest id) first per recipient')
          for (const o of forPeer) {
            assert.deepEqual(o, outboxFor(messages.find((m) => m.id === o.id) as MessageRecord))
          }
        }
      })
    })

    describe('saveIncoming', () => {
      it('dedupes by id within one call and across calls, returning only new ones in input order', async () => {
        const m1 = incoming(peers.a, 5, 'first copy')
        const m2 = incoming(peers.a, 2)
        const m3 = incoming(peers.b, 9)
        const m1Again: MessageRecord = { ...m1, text: 'second copy', lamport: 6 }

        const fresh1 = await store.saveIncoming([m1, m2, m1Again, m3], 9)
        assert.deepEqual(fresh1, [m1, m2, m3])

        const m4 = incoming(peers.b, 3)
        const m5 = incoming(peers.a, 1)
        const fresh2 = await store.saveIncoming([m3, m4, { ...m1 }, m5, m2], 9)
        assert.deepEqual(fresh2, [m4, m5])

        assert.deepEqual(await store.saveIncoming([m1, m2, m3, m4, m5], 9), [])
        assert.deepEqual(await store.saveIncoming([], 9), [])

        assert.deepEqual(await store.getMessage(m1.id), m1, 'the first copy stored wins')
        assert.deepEqual(await allHistory(peers.a), [m5, m2, m1])
        assert.deepEqual(await allHistory(peers.b), [m4, m3])
      })

      it('drops a message whose id is already stored as an outgoing message', async () => {
        const out = outgoing(peers.a, 1)
        await send(out)
        const echo: MessageRecord = { ...incoming(peers.a, 2), id: out.id }
        assert.deepEqual(await store.saveIncoming([echo], 2), [])
        assert.deepEqual(await store.getMessage(out.id), out)
        assert.deepEqual(await allHistory(peers.a), [out])
      })
    })

    describe('queueOutbox', () => {
      it('queues an entry with no message record, and settling removes it', async () => {
        const id = nextId()
        const frame = new TextEncoder().encode('a receipt frame')
        await store.queueOutbox({ id, to: peers.a, frame, createdAt: BASE_TIME, expiresAt: BASE_TIME + 1000 })
        const listed = await store.listOutbox()
        assert.deepEqual(listed.map((r) => [r.id, r.to, [...r.frame]]), [[id, peers.a, [...frame]]])
        assert.equal(await store.getMessage(id), undefined, 'no message record')
        assert.deepEqual(await store.history(peers.a, { limit: 10 }), [])
        await store.settleOutgoing([{ id, to: peers.a, status: 'delivered' }])
        assert.deepEqual(await store.listOutbox(), [])
      })
    })

    describe('settleOutgoing', () => {
      it('updates the status seen by getMessage, history and listConversations and drops outbox entries', async () => {
        const toA1 = outgoing(peers.a, 2)
        const toA2 = outgoing(peers.a, 3)
        const toB = outgoing(peers.b, 4)
        const toC = outgoing(peers.c, 5)
        for (const m of [toA1, toA2, toB, toC]) await send(m)
        await store.saveIncoming([incoming(peers.a, 1)], 5) // an incoming one alongside

        await store.settleOutgoing([])
        assert.equal((await store.listOutbox()).length, 4)

        await store.settleOutgoing([
          { id: toA2.id, to: peers.a, status: 'delivered' },
          { id: toB.id, to: peers.b, status: 'failed' }
        ])
        assert.equal((await store.getMessage(toA2.id))?.status, 'delivered')
        assert.equal((await store.getMessage(toB.id))?.status, 'failed')
        assert.equal((await store.getMessage(toA1.id))?.status, 'pending')
        assert.equal((await store.getMessage(toC.id))?.status, 'pending')

        const historyA = await allHistory(peers.a)
        assert.deepEqual(historyA.map((m) => [m.id, m.status]), [
          [historyA[0]?.id, 'received'],
          [toA1.id, 'pending'],
          [toA2.id, 'delivered']
        ])
        assert.deepEqual((await allHistory(peers.b)).map((m) => m.status), ['failed'])

        const outbox = await store.listOutbox()
        assert.deepEqual(ids(outbox).sort(compareStrings), [toA1.id, toC.id].sort(compareStrings))

        const summaries = await store.listConversations()
        const lastOf = (peer: PeerIdString): MessageRecord | undefined => summaries.find((s) => s.peerId === peer)?.last
        assert.equal(lastOf(peers.a)?.status, 'delivered')
        assert.equal(lastOf(peers.b)?.status, 'failed')
        assert.deepEqual(lastOf(peers.c), toC)

        await store.settleOutgoing([{ id: toA1.id, to: peers.a, status: 'failed' }, { id: toC.id, to: peers.c, status: 'delivered' }])
        assert.deepEqual(await store.listOutbox(), [])
        assert.deepEqual({ ...(await store.getMessage(toC.id)) }, { ...toC, status: 'delivered' })
      })
    })

    describe('history', () => {
      it('orders by (lamport, sender, id) whatever the insertion order', async () => {
        const rng = new Rng(42)
        // Lamports that sort wrongly as decimal strings or as unpadded hex.
        const lamports = [1, 2, 9, 10, 15, 16, 17, 99, 100, 255, 256, 4095, 4096, 65536, 2 ** 40]
        const messages: MessageRecord[] = []
        for (const l of lamports) {
          messages.push(incoming(peers.a, l)) // ties on lamport between the two senders
          messages.push(outgoing(peers.a, l))
        }
        // Same sender and lamport: the id breaks the tie.
        messages.push(incoming(peers.a, 16), incoming(peers.a, 16), outgoing(peers.a, 16))
        // Another conversation interleaved with the same lamports.
        const others = lamports.map((l) => incoming(peers.b, l))

        const shuffled = rng.shuffle([...messages, ...others])
        for (let i = 0; i < shuffled.length;) {
          const m = shuffled[i] as MessageRecord
          if (m.direction === 'out') {
            await send(m)
            i++
          } else {
            const batch: MessageRecord[] = []
            while (i < shuffled.length && (shuffled[i] as MessageRecord).direction === 'in' && batch.length < 3) {
              batch.push(shuffled[i] as MessageRecord)
              i++
            }
            await store.saveIncoming(rng.shuffle(batch), 1)
          }
        }

        const expected = [...messages].sort(byConversationOrder)
        assert.deepEqual(ids(await allHistory(peers.a)), ids(expected))
        assert.deepEqual(await allHistory(peers.a), expected)
        assert.deepEqual(ids(await allHistory(peers.b)), ids([...others].sort(byConversationOrder)))
        assert.deepEqual(await allHistory(peers.c), [])
      })

      it('limit returns the newest N, oldest first', async () => {
        const rng = new Rng(3)
        const messages: MessageRecord[] = []
        for (let i = 1; i <= 20; i++) messages.push(i % 4 === 0 ? outgoing(peers.a, i) : incoming(peers.a, i))
        await store.saveIncoming(rng.shuffle(messages.filter((m) => m.direction === 'in')), 20)
        for (const m of messages.filter((x) => x.direction === 'out')) await send(m)

        assert.deepEqual(await store.history(peers.a, { limit: 5 }), messages.slice(15))
        assert.deepEqual(await store.history(peers.a, { limit: 1 }), messages.slice(19))
        assert.deepEqual(await store.history(peers.a, { limit: 20 }), messages)
        assert.deepEqual(await store.history(peers.a, { limit: 500 }), messages)
        const before = messages[10] as MessageRecord
        assert.deepEqual(await store.history(peers.a, { limit: 4, before: before.id }), messages.slice(6, 10))
        assert.deepEqual(await store.history(peers.a, { limit: 50, before: before.id }), messages.slice(0, 10))
        assert.deepEqual(await store.history(peers.a, { limit: 5, before: (messages[0] as MessageRecord).id }), [])
      })

      it('before-paging walks a whole conversation of 250 messages without gaps or duplicates', async () => {
        const rng = new Rng(250)
        const messages: MessageRecord[] = []
        for (let i = 0; i < 250; i++) {
          const lamport = Math.floor(i / 3) + 1 // plenty of lamport ties
          messages.push(i % 5 === 0 ? outgoing(peers.a, lamport) : incoming(peers.a, lamport))
        }
        const noise = Array.from({ length: 30 }, (_, i) => incoming(i % 2 === 0 ? peers.b : peers.c, i + 1))
        const shuffled = rng.shuffle([...messages, ...noise])
        const incomingOnes = shuffled.filter((m) => m.direction === 'in')
        for (let i = 0; i < incomingOnes.length; i += 25) await store.saveIncoming(incomingOnes.slice(i, i + 25), 100)
        for (const m of shuffled.filter((x) => x.direction === 'out')) await send(m)

        const expected = [...messages].sort(byConversationOrder)
        const pages: MessageRecord[][] = []
        let page = await store.history(peers.a, { limit: 40 })
        while (page.length > 0) {
          pages.push(page)
          assert.ok(pages.length <= 10, 'paging must terminate')
          page = await store.history(peers.a, { limit: 40, before: (page[0] as MessageRecord).id })
        }
        assert.deepEqual(pages.map((p) => p.length), [40, 40, 40, 40, 40, 40, 10])
        const walked = pages.reverse().flat()
        assert.equal(new Set(ids(walked)).size, walked.length, 'no duplicates')
        assert.deepEqual(ids(walked), ids(expected), 'no gaps, in order')
        assert.deepEqual(walked, expected)
      })

      it('never returns messages of another conversation, even with a before id from another one', async () => {
        const inA = [incoming(peers.a, 1), incoming(peers.a, 2)]
        const inB = [incoming(peers.b, 1), incoming(peers.b, 2)]
        const inC = [incoming(peers.c, 1), incoming(peers.c, 2)]
        await store.saveIncoming([...inC, ...inB, ...inA], 2)
        for (const [conv, own] of [[peers.a, inA], [peers.b, inB], [peers.c, inC]] as const) {
          assert.deepEqual(await allHistory(conv), own)
          for (const foreign of [...inA, ...inB, ...inC].filter((m) => m.conversation !== conv)) {
            const page = await store.history(conv, { limit: 10, before: foreign.id })
            assert.deepEqual(page.filter((m) => m.conversation !== conv), [],
              `history(${conv.slice(-6)}, before: a message of ${foreign.conversation.slice(-6)}) leaked another conversation`)
          }
        }
      })
    })

    describe('listConversations', () => {
      it('lists each conversation with its newest message', async () => {
        const a = [incoming(peers.a, 1), outgoing(peers.a, 2), incoming(peers.a, 3), outgoing(peers.a, 10)]
        const b = [incoming(peers.b, 7), incoming(peers.b, 9), incoming(peers.b, 8)]
        const c = outgoing(peers.c, 1)
        // Newest first, so the last one written is not the newest.
        for (const m of [...a].reverse()) {
          if (m.direction === 'out') await send(m)
          else await store.saveIncoming([m], 10)
        }
        await store.saveIncoming(b, 10)
        await send(c)
        await store.putContact(contact(peers.d, 'No messages yet'))

        const summaries = (await store.listConversations()).sort((x, y) => compareStrings(x.peerId, y.peerId))
        assert.deepEqual(summaries, [
          { peerId: peers.a, last: a[3] },
          { peerId: peers.b, last: b[1] },
          { peerId: peers.c, last: c }
        ])
      })
    })

    describe('returned records are copies', () => {
      it('mutating what the store returned (or what was passed in) does not change stored data', async () => {
        const inMsg = incoming(peers.a, 1, 'original in')
        const outMsg = outgoing(peers.a, 2, 'original out')
        const frame = new Uint8Array([1, 2, 3, 4])
        const entry = outboxFor(outMsg, frame)
        const c = contact(peers.a, 'Alice')
        const snapshot = structuredClone({ inMsg, outMsg, entry, c })

        const fresh = await store.saveIncoming([inMsg], 1)
        await store.saveOutgoing(outMsg, entry, 2)
        await store.putContact(c)

        // Mutate the inputs after the writes.
        inMsg.text = 'mutated input'
        outMsg.status = 'delivered'
        frame[0] = 99
        entry.expiresAt = 0
        c.addrs.push('/ip4/6.6.6.6/tcp/666')
        c.name = 'Mallory'
        // And everything the store handed back.
        for (const m of fresh) m.text = 'mutated fresh'
        const got = await store.getMessage(snapshot.inMsg.id)
        if (got !== undefined) {
          got.text = 'mutated got'
          got.lamport = 1000
        }
        for (const m of await allHistory(peers.a)) {
          m.text = 'mutated history'
          m.status = 'failed'
        }
        for (const s of await store.listConversations()) if (s.last !== undefined) s.last.text = 'mutated summary'
        for (const o of await store.listOutbox()) {
          o.frame[1] = 99
          o.frame.fill(0)
          o.createdAt = 0
        }
        const gotContact = await store.getContact(peers.a)
        gotContact?.addrs.splice(0)
        for (const x of await store.listContacts()) {
          x.name = 'mutated list'
          x.addrs.push('/dns4/evil/tcp/1')
        }

        assert.deepEqual(await store.getMessage(snapshot.inMsg.id), snapshot.inMsg)
        assert.deepEqual(await store.getMessage(snapshot.outMsg.id), snapshot.outMsg)
        assert.deepEqual(await allHistory(peers.a), [snapshot.inMsg, snapshot.outMsg])
        assert.deepEqual(await store.listConversations(), [{ peerId: peers.a, last: snapshot.outMsg }])
        assert.deepEqual(await store.listOutbox(), [snapshot.entry])
        assert.deepEqual(await store.getContact(peers.a), snapshot.c)
        assert.deepEqual(await store.listContacts(), [snapshot.c])
      })
    })

    describe('concurrency', () => {
      it('50 concurrent saveIncoming calls with overlapping ids store each id exactly once', async () => {
        const pool = Array.from({ length: 110 }, (_, i) => incoming(i % 2 === 0 ? peers.a : peers.b, i + 1))
        const batches = Array.from({ length: 50 }, (_, i) => {
          const batch = pool.slice(i * 2, i * 2 + 12).map((m) => ({ ...m }))
          batch.push({ ...(pool[i] as MessageRecord) }) // an older one again
          batch.push({ ...(batch[0] as MessageRecord) }) // and a duplicate inside the call
          return batch
        })
        const results = await Promise.all(batches.map(async (batch, i) => await store.saveIncoming(batch, i + 1)))

        const returned = results.flat()
        assert.equal(returned.length, pool.length, 'each id is reported new exactly once')
        assert.deepEqual(new Set(ids(returned)), new Set(ids(pool)))
        results.forEach((fresh, i) => {
          // Each call's fresh list keeps the input order of its batch.
          const order = ids(batches[i] as MessageRecord[])
          const positions = fresh.map((m) => order.indexOf(m.id))
          assert.deepEqual(positions, [...positions].sort((x, y) => x - y))
        })

        const stored = [...await allHistory(peers.a), ...await allHistory(peers.b)]
        assert.equal(stored.length, pool.length)
        assert.deepEqual(new Set(ids(stored)), new Set(ids(pool)))
        assert.deepEqual(await allHistory(peers.a), pool.filter((m) => m.conversation === peers.a))
        assert.equal(await store.getClock(), 50)
      })

      it('concurrent writes of every kind all land', async () => {
        const outs = Array.from({ length: 20 }, (_, i) => outgoing(peers.c, i + 1))
        const ins = Array.from({ length: 20 }, (_, i) => incoming(peers.d, i + 1))
        await Promise.all([
          ...outs.map(async (m) => { await send(m) }),
          ...ins.map(async (m, i) => { await store.saveIncoming([m], 100 + i) }),
          ...Array.from({ length: 20 }, async (_, i) => { await store.putSetting(`k${i}`, `v${i}`) }),
          store.putContact(contact(peers.a, 'A')),
          store.putContact(contact(peers.b, 'B'))
        ])
        assert.deepEqual(await allHistory(peers.c), outs)
        assert.deepEqual(await allHistory(peers.d), ins)
        assert.deepEqual(ids(await store.listOutbox()), ids(outs))
        for (let i = 0; i < 20; i++) assert.equal(await store.getSetting(`k${i}`), `v${i}`)
        assert.equal((await store.listContacts()).length, 2)
        assert.equal(await store.getClock(), 119)
      })
    })

    describe('crypto state', () => {
      it('puts, overwrites, deletes and lists by prefix in key order', async () => {
        const bytes = (n: number): Uint8Array => new Uint8Array([n, n + 1, n + 2])
        assert.equal(await store.getCrypto('session:x'), undefined)
        await store.putCrypto(new Map([['session:b', bytes(2)], ['session:a', bytes(1)], ['prekey:7', bytes(7)], ['sessionz', bytes(9)]]))
        assert.deepEqual(await store.getCrypto('session:a'), bytes(1))
        await store.putCrypto(new Map<string, Uint8Array | null>([['session:a', bytes(10)], ['prekey:7', null]]))
        assert.deepEqual(await store.getCrypto('session:a'), bytes(10))
        assert.equal(await store.getCrypto('prekey:7'), undefined)
        assert.deepEqual(await store.listCrypto('session:'), [{ key: 'session:a', value: bytes(10) }, { key: 'session:b', value: bytes(2) }])
        assert.deepEqual(await store.listCrypto('nothing:'), [])
        await store.putCrypto(new Map())
      })

      it('goes into the same write as saveIncoming, even when every message is a duplicate', async () => {
        const m = incoming(peers.a, 1)
        await store.saveIncoming([m], 1, new Map([['session:a', new Uint8Array([1])]]))
        assert.deepEqual(await store.getCrypto('session:a'), new Uint8Array([1]))
        assert.deepEqual(await store.saveIncoming([m], 1, new Map([['session:a', new Uint8Array([2])]])), [])
        assert.deepEqual(await store.getCrypto('session:a'), new Uint8Array([2]))
      })

      it('returns copies: mutating a returned value changes nothing stored', async () => {
        await store.putCrypto(new Map([['k', new Uint8Array([5])]]))
        const got = await store.getCrypto('k') as Uint8Array
        got[0] = 9
        assert.deepEqual(await store.getCrypto('k'), new Uint8Array([5]))
      })

      it('survives a reopen', async (t) => {
        await store.putCrypto(new Map([['identity:self', new Uint8Array(64).fill(3)]]))
        await store.saveIncoming([incoming(peers.b, 1)], 1, new Map([['session:b', new Uint8Array([4, 4])]]))
        if (!await reopenOrSkip(t)) return
        assert.deepEqual(await store.getCrypto('identity:self'), new Uint8Array(64).fill(3))
        assert.deepEqual(await store.getCrypto('session:b'), new Uint8Array([4, 4]))
      })
    })

    describe('group area', () => {
      const bytes = (...n: number[]): Uint8Array => new Uint8Array(n)
      const entries = (pairs: Array<[string, Uint8Array | null]>): Map<string, Uint8Array | null> => new Map(pairs)
      const keysOf = (list: Array<{ key: string }>): string[] => list.map((e) => e.key)

      it('puts, overwrites, deletes, and lists by prefix in key order, from gte, up to limit', async () => {
        assert.equal(await store.getGroupEntry('g1/r/a/01'), undefined)
        await store.putGroupEntries(entries([
          ['g1/r/b/01', bytes(3)], ['g1/r/a/02', bytes(2)], ['g1/r/a/01', bytes(1)], ['g1/s', bytes(9)],
          ['g1x/r/a/01', bytes(7)], ['g0/r/a/01', bytes(6)], ['g1/r/a/03', bytes(4)]
        ]))
        assert.deepEqual(await store.getGroupEntry('g1/r/a/02'), bytes(2))
        assert.deepEqual(await store.listGroupEntries('g1/r/'), [
          { key: 'g1/r/a/01', value: bytes(1) }, { key: 'g1/r/a/02', value: bytes(2) }, { key: 'g1/r/a/03', value: bytes(4) }, { key: 'g1/r/b/01', value: bytes(3) }
        ])
        // The prefix is matched exactly: 'g1x/...' is another group's.
        assert.deepEqual(keysOf(await store.listGroupEntries('g1/')), ['g1/r/a/01', 'g1/r/a/02', 'g1/r/a/03', 'g1/r/b/01', 'g1/s'])
        assert.deepEqual(keysOf(await store.listGroupEntries('g1/r/a/', { gte: 'g1/r/a/02' })), ['g1/r/a/02', 'g1/r/a/03'])
        assert.deepEqual(keysOf(await store.listGroupEntries('g1/r/', { gte: 'g1/r/a/02', limit: 2 })), ['g1/r/a/02', 'g1/r/a/03'])
        assert.deepEqual(keysOf(await store.listGroupEntries('g1/r/', { limit: 1 })), ['g1/r/a/01'])
        assert.deepEqual(await store.listGroupEntries('g1/r/', { limit: 0 }), [])
        // A gte before the prefix starts at the prefix; one after it lists nothing.
        assert.deepEqual(keysOf(await store.listGroupEntries('g1/r/a/', { gte: 'g0' })), ['g1/r/a/01', 'g1/r/a/02', 'g1/r/a/03'])
        assert.deepEqual(await store.listGroupEntries('g1/r/a/', { gte: 'g1/r/b' }), [])
        assert.deepEqual(await store.listGroupEntries('g2/'), [])
        assert.equal((await store.listGroupEntries('')).length, 7)

        await store.putGroupEntries(entries([['g1/r/a/02', bytes(20, 21)], ['g1/r/a/01', null], ['g1/nothing', null]]))
        assert.equal(await store.getGroupEntry('g1/r/a/01'), undefined)
        assert.deepEqual(await store.listGroupEntries('g1/r/a/'), [{ key: 'g1/r/a/02', value: bytes(20, 21) }, { key: 'g1/r/a/03', value: bytes(4) }])
        await store.putGroupEntries(new Map())
        await assert.rejects(store.listGroupEntries('g1/', { limit: -1 }), { name: 'InvalidRequestError' })
      })

      it('orders keys by code point (UTF-8 bytes) and lists non-Latin keys under a prefix', async () => {
        const keys = ['p/\u{1F600}', 'p/\uE000', 'p/z', 'p/\u00E9', 'p/\u4E2D', 'p0']
        await store.putGroupEntries(new Map(keys.map((k, i) => [k, bytes(i)])))
        assert.deepEqual(keysOf(await store.listGroupEntries('p/')), ['p/z', 'p/\u00E9', 'p/\u4E2D', 'p/\uE000', 'p/\u{1F600}'])
        assert.deepEqual(keysOf(await store.listGroupEntries('p/', { gte: 'p/\uE000' })), ['p/\uE000', 'p/\u{1F600}'])
        assert.deepEqual(keysOf(await store.listGroupEntries('p/\u{1F600}')), ['p/\u{1F600}'])
      })

      it('is a namespace of its own: the same key in the crypto area or settings is another value', async () => {
        await store.putCrypto(new Map([['k', bytes(1)]]))
        await store.putSetting('k', 'setting')
        await store.putGroupEntries(entries([['k', bytes(2)]]))
        assert.deepEqual(await store.getCrypto('k'), bytes(1))
        assert.deepEqual(await store.getGroupEntry('k'), bytes(2))
        assert.equal(await store.getSetting('k'), 'setting')
        assert.deepEqual(await store.listCrypto(''), [{ key: 'k', value: bytes(1) }])
        assert.deepEqual(await store.listGroupEntries(''), [{ key: 'k', value: bytes(2) }])
        await store.putGroupEntries(entries([['k', null]]))
        assert.deepEqual(await store.getCrypto('k'), bytes(1))
      })

      it('writes group entries and Signal state changes together', async () => {
        await store.putCrypto(new Map([['senderkey:old', bytes(1)]]))
        await store.putGroupEntries(entries([['g/r/1', bytes(5)]]), new Map<string, Uint8Array | null>([['senderkey:a', bytes(6)], ['senderkey:old', null]]))
        assert.deepEqual(await store.getGroupEntry('g/r/1'), bytes(5))
        assert.deepEqual(await store.getCrypto('senderkey:a'), bytes(6))
        assert.equal(await store.getCrypto('senderkey:old'), undefined)
        // Crypto changes alone (a record refused after decrypting still moves the chain).
        await store.putGroupEntries(new Map(), new Map([['senderkey:a', bytes(7)]]))
        assert.deepEqual(await store.getCrypto('senderkey:a'), bytes(7))
      })

      it('refuses a malformed key or value with InvalidRequestError and writes nothing of that call', async () => {
        await store.putGroupEntries(entries([['g/keep', bytes(1)]]), new Map([['session:x', bytes(1)]]))
        const bad: Array<[string, unknown]> = [
          ['', bytes(1)], ['x'.repeat(1025), bytes(1)], ['g/\uD800', bytes(1)], ['g/\uDC00x', bytes(1)], ['g/not-bytes', 'text'], ['g/undefined', undefined]
        ]
        for (const [key, value] of bad) {
          const changes = new Map<string, unknown>([['g/new', bytes(2)], ['g/keep', null], [key, value]]) as Map<string, Uint8Array | null>
          await assert.rejects(store.putGroupEntries(changes, new Map([['session:x', bytes(2)], ['session:y', bytes(2)]])), { name: 'InvalidRequestError' }, JSON.stringify(key.slice(0, 20)))
        }
        assert.deepEqual(await store.listGroupEntries(''), [{ key: 'g/keep', value: bytes(1) }])
        assert.deepEqual(await store.listCrypto('session:'), [{ key: 'session:x', value: bytes(1) }])
        // The longest key and a well-formed astral character are fine.
        await store.putGroupEntries(entries([['x'.repeat(1024), bytes(3)], ['g/\u{1F600}', bytes(4)]]))
        assert.deepEqual(await store.getGroupEntry('x'.repeat(1024)), bytes(3))
        assert.deepEqual(await store.getGroupEntry('g/\u{1F600}'), bytes(4))
      })

      it('copies bytes in and out: neither the caller\'s buffer nor a returned value changes what is stored', async () => {
        const value = bytes(1, 2, 3)
        await store.putGroupEntries(entries([['g/v', value]]))
        value[0] = 9
        const got = await store.getGroupEntry('g/v') as Uint8Array
        assert.deepEqual(got, bytes(1, 2, 3))
        got[1] = 9
        const [listed] = await store.listGroupEntries('g/')
        assert.deepEqual(listed?.value, bytes(1, 2, 3))
        if (listed !== undefined) listed.value[2] = 9
        assert.deepEqual(await store.getGroupEntry('g/v'), bytes(1, 2, 3))
      })

      it('concurrent writes all land, each with its crypto changes', async () => {
        await Promise.all(Array.from({ length: 50 }, async (_, i) => {
          const key = `g/r/${i.toString().padStart(3, '0')}`
          await store.putGroupEntries(entries([[key, bytes(i)], [`${key}/meta`, bytes(i, i)]]), new Map([[`senderkey:${i}`, bytes(i)]]))
        }))
        const listed = await store.listGroupEntries('g/r/')
        assert.equal(listed.length, 100)
        assert.deepEqual(keysOf(listed), keysOf(listed).sort())
        assert.equal((await store.listCrypto('senderkey:')).length, 50)
      })

      it('survives a reopen, with its Signal state changes', async (t) => {
        const value = new Uint8Array(96 * 1024).map((_, i) => i * 7)
        await store.putGroupEntries(entries([['g/r/1', value], ['g/r/2', bytes(2)], ['g/snap', bytes(3)]]), new Map([['senderkey:a', bytes(8)]]))
        await store.putGroupEntries(entries([['g/r/2', null]]))
        if (!await reopenOrSkip(t)) return
        assert.deepEqual(await store.listGroupEntries('g/'), [{ key: 'g/r/1', value }, { key: 'g/snap', value: bytes(3) }])
        assert.deepEqual(await store.getCrypto('senderkey:a'), bytes(8))
        await store.putGroupEntries(entries([['g/r/3', bytes(4)]]))
        assert.deepEqual(keysOf(await store.listGroupEntries('g/r/')), ['g/r/1', 'g/r/3'])
      })
    })

    describe('persistence', () => {
      it('keeps clock, settings, contacts, messages, statuses, outbox and order across a reopen', async (t) => {
        const rng = new Rng(99)
        await store.putSetting('name', 'Ada')
        await store.putContact(contact(peers.a, 'Alice'))
        await store.putContact(contact(peers.b, 'Bob'))
        await store.putContact(contact(peers.c, 'Carol'))
        await store.deleteContact(peers.b)

        const messages: MessageRecord[] = []
        for (let i = 1; i <= 60; i++) {
          const peer = [peers.a, peers.b, peers.c][i % 3] as PeerIdString
          messages.push(i % 4 === 0 ? outgoing(peer, Math.ceil(i / 2)) : incoming(peer, Math.ceil(i / 2)))
        }
        const shuffled = rng.shuffle(messages)
        await store.saveIncoming(shuffled.filter((m) => m.direction === 'in'), 30)
        const outs = shuffled.filter((m) => m.direction === 'out')
        for (const m of outs) await store.saveOutgoing(m, outboxFor(m, rng.bytes(1 + rng.int(200))), 33)
        const delivered = outs[0] as MessageRecord
        const failed = outs[1] as MessageRecord
        await store.settleOutgoing([
          { id: delivered.id, to: delivered.conversation, status: 'delivered' },
          { id: failed.id, to: failed.conversation, status: 'failed' }
        ])

        const snapshot = async (): Promise<unknown> => ({
          clock: await store.getClock(),
          name: await store.getSetting('name'),
          contacts: (await store.listContacts()).sort((x, y) => compareStrings(x.peerId, y.peerId)),
          contactB: await store.getContact(peers.b),
          histories: await Promise.all([peers.a, peers.b, peers.c].map(allHistory)),
          page: await store.history(peers.a, { limit: 3, before: (messages.filter((m) => m.conversation === peers.a)[10] as MessageRecord).id }),
          conversations: (await store.listConversations()).sort((x, y) => compareStrings(x.peerId, y.peerId)),
          outbox: await store.listOutbox(),
          messages: await Promise.all(messages.map(async (m) => await store.getMessage(m.id)))
        })
        const beforeReopen = await snapshot()
        if (!await reopenOrSkip(t)) return
        const afterReopen = await snapshot()
        assert.deepEqual(afterReopen, beforeReopen)

        assert.equal(await store.getClock(), 33)
        assert.equal((await store.getMessage(delivered.id))?.status, 'delivered')
        assert.equal((await store.getMessage(failed.id))?.status, 'failed')
        assert.equal((await store.listOutbox()).length, outs.length - 2)

        // Dedupe survives the reopen, and the reopened store keeps working.
        assert.deepEqual(await store.saveIncoming(messages.filter((m) => m.direction === 'in'), 34), [])
        const late = incoming(peers.a, 1000)
        assert.deepEqual(await store.saveIncoming([late], 1000), [late])
        const pending = outs[2] as MessageRecord
        await store.settleOutgoing([{ id: pending.id, to: pending.conversation, status: 'delivered' }])
        if (!await reopenOrSkip(t)) return
        assert.equal(await store.getClock(), 1000)
        assert.deepEqual(await store.getMessage(late.id), late)
        assert.equal((await store.getMessage(pending.id))?.status, 'delivered')
        assert.equal((await store.listOutbox()).length, outs.length - 3)
        const historyA = await allHistory(peers.a)
        assert.deepEqual(historyA.at(-1), late)
      })
    })
  })
}
