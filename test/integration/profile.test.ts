import '../../core/polyfill.js'
import { afterEach, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import type { ContactView, MessengerEvent } from '../../core/api/contract.js'
import { createDispatcher } from '../../core/api/dispatcher.js'
import { newMessageId } from '../../core/ids.js'
import { MAX_AVATAR_BYTES } from '../../core/profile.js'
import { png } from '../helpers/images.js'
import { eventually, removeDir, sendRaw, startPeer, type TestPeer } from '../helpers/messengers.js'
import { startRelay, type TestRelay } from '../helpers/relay.js'

// Profiles between real Messengers: libp2p over TCP on 127.0.0.1, level databases in temp
// dirs, and a real relay (mailbox, prekeys) for the offline case.

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {})
})

async function peer (opts: Parameters<typeof startPeer>[0] = {}): Promise<TestPeer> {
  const p = await startPeer(opts)
  cleanups.push(async () => { await p.stop().catch(() => {}); await removeDir(p.dir) })
  return p
}

async function relay (): Promise<TestRelay> {
  const r = await startRelay()
  cleanups.push(async () => { await r.stop() })
  return r
}

/** Two peers who named themselves (name.set, so a restart keeps later changes) and added each other by invite. */
async function pair (opts: Parameters<typeof startPeer>[0] = {}): Promise<[TestPeer, TestPeer]> {
  const a = await peer(opts)
  const b = await peer(opts)
  await a.m.setName('Ada')
  await b.m.setName('Bob')
  await a.m.addContact(b.m.whoami().invite)
  await b.m.addContact(a.m.whoami().invite)
  return [a, b]
}

function contactOf (p: TestPeer, peerId: string): ContactView | undefined {
  return p.m.listContacts().find((c) => c.peerId === peerId)
}

function contactEvents (events: MessengerEvent[], peerId: string): ContactView[] {
  return events.flatMap((e) => e.event === 'contact' && e.contact.peerId === peerId ? [e.contact] : [])
}

const photo = png(128, 128, [30, 120, 200])
const photo2 = png(96, 96, [250, 200, 10])
const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64')

describe('profiles: name and avatar that contacts see', () => {
  it('refuses junk base64, a text file, a picture too large: a clear error, nothing stored, nothing sent', { timeout: 60_000 }, async () => {
    const [a, b] = await pair()
    await eventually(() => contactOf(b, a.m.peerId)?.profileName === 'Ada', 'B has A\'s first profile')
    const dispatch = createDispatcher(a.m)
    const before = a.m.whoami()
    const refused: Array<[unknown, RegExp]> = [
      ['not base64 at all!', /base64/],
      [`data:image/png;base64,${b64(photo)}`, /base64/],
      [b64(photo).slice(0, -1), /base64/],
      [b64(new TextEncoder().encode('Dear diary, today I pretended to be a PNG.\n')), /not a PNG, JPEG or WebP/],
      [b64(png(16, 16).subarray(0, 20)), /not a PNG, JPEG or WebP/],
      [b64(png(2048, 8)), /2048x8/],
      [b64(new Uint8Array(MAX_AVATAR_BYTES + 1)), /over 49152 bytes/],
      [b64(Buffer.concat([photo, Buffer.alloc(MAX_AVATAR_BYTES)])), /over 49152 bytes/],
      ['', /empty/],
      [42, /"avatar" must be a base64 string or null/]
    ]
    for (const [avatar, message] of refused) {
      await assert.rejects(dispatch('profile.set', { avatar }), (err: Error) => {
        assert.equal(err.name, 'InvalidRequestError')
        assert.match(err.message, message)
        return true
      }, String(avatar).slice(0, 40))
    }
    await assert.rejects(dispatch('profile.set', { name: '   ', avatar: b64(photo) }), { name: 'InvalidRequestError' }, 'a bad name with a good avatar changes neither')
    assert.deepEqual(a.m.whoami(), before)
    assert.deepEqual(await dispatch('profile.avatar', { peerId: a.m.peerId }), { peerId: a.m.peerId, avatar: null })
    await a.restart()
    assert.equal(a.m.whoami().avatar, undefined, 'nothing stored')
    assert.equal(contactEvents(b.events, a.m.peerId).length, 1, 'B heard of one profile (the first), nothing since')
  })

  it('A sets name and avatar; B sees both (contact event, list, profile.avatar); B\'s own name for A wins; all survives restarts', { timeout: 90_000 }, async () => {
    const [a, b] = await pair()
    await eventually(() => contactOf(b, a.m.peerId)?.profileName === 'Ada' && contactOf(a, b.m.peerId)?.profileName === 'Bob', 'both learned each other\'s first profile')

    const me = await createDispatcher(a.m)('profile.set', { name: 'Ada Lovelace', avatar: b64(photo) }) as { name: string, avatar?: string }
    assert.equal(me.name, 'Ada Lovelace')
    assert.match(me.avatar ?? '', /^[0-9a-f]{16}$/)
    await eventually(() => contactEvents(b.events, a.m.peerId).some((c) => c.avatar === me.avatar), 'B got a contact event with A\'s avatar')
    const seen = contactOf(b, a.m.peerId)
    assert.equal(seen?.name, 'Ada Lovelace', 'not renamed by B: their profile name shows')
    assert.equal(seen?.profileName, 'Ada Lovelace')
    assert.equal(seen?.avatar, me.avatar)
    const fetched = await createDispatcher(b.m)('profile.avatar', { peerId: a.m.peerId })
    assert.deepEqual(fetched, { peerId: a.m.peerId, avatar: { hash: me.avatar, mime: 'image/png', data: b64(photo) } })
    const own = await a.m.avatarOf(a.m.peerId)
    assert.equal(own.avatar?.data, b64(photo))

    // B's own name for A wins for display; A's profile name stays available.
    await b.m.renameContact(a.m.peerId, 'Mum')
    await a.m.setProfile({ name: 'Countess of Lovelace' })
    await eventually(() => contactOf(b, a.m.peerId)?.profileName === 'Countess of Lovelace', 'B got the new name')
    assert.equal(contactOf(b, a.m.peerId)?.name, 'Mum')
    assert.equal((await b.m.conversations()).length, 0)
    await b.m.sendText(a.m.peerId, 'hi')
    assert.equal((await b.m.conversations())[0]?.name, 'Mum', 'the conversation list uses our name too')
    assert.equal(contactOf(b, a.m.peerId)?.avatar, me.avatar, 'a name change keeps the avatar')

    // Removing the avatar reaches B too.
    await a.m.setProfile({ avatar: null })
    await eventually(() => contactOf(b, a.m.peerId)?.avatar === undefined, 'B dropped A\'s avatar')
    assert.deepEqual(await b.m.avatarOf(a.m.peerId), { peerId: a.m.peerId, avatar: null })
    await a.m.setProfile({ avatar: b64(photo2) })
    const hash2 = a.m.whoami().avatar
    await eventually(() => contactOf(b, a.m.peerId)?.avatar === hash2, 'B has the second picture')

    // Restarts: B keeps what it learned, A keeps its own; nothing is sent again.
    const eventsBefore = contactEvents(b.events, a.m.peerId).length
    await b.restart()
    assert.deepEqual({ name: contactOf(b, a.m.peerId)?.name, profileName: contactOf(b, a.m.peerId)?.profileName, avatar: contactOf(b, a.m.peerId)?.avatar }, { name: 'Mum', profileName: 'Countess of Lovelace', avatar: hash2 })
    assert.equal((await b.m.avatarOf(a.m.peerId)).avatar?.data, b64(photo2))
    await a.restart()
    assert.equal(a.m.whoami().avatar, hash2)
    assert.equal(a.m.whoami().name, 'Countess of Lovelace')
    await eventually(() => contactOf(a, b.m.peerId)?.connected === true, 'A and B reconnected')
    await new Promise((resolve) => setTimeout(resolve, 1000))
    assert.equal(a.m.pendingCount(b.m.peerId), 0, 'no profile queued again after a restart')
    assert.equal(contactEvents(b.events, a.m.peerId).length, eventsBefore, 'B saw no profile again')
  })

  it('B was offline when A changed its picture: it arrives through the relay mailbox', { timeout: 90_000 }, async () => {
    const r = await relay()
    const opts = { listen: ['/p2p-circuit'], relays: [r.addr] }
    const [a, b] = await pair(opts)
    await eventually(() => contactOf(b, a.m.peerId)?.profileName === 'Ada', 'B has A\'s first profile')
    await b.stop()
    await eventually(() => contactOf(a, b.m.peerId)?.connected === false, 'A sees B gone')

    await a.m.setProfile({ name: 'Ada L.', avatar: b64(photo) })
    const hash = a.m.whoami().avatar
    await eventually(() => a.m.pendingCount(b.m.peerId) === 0, 'deposited at the relay (B is offline: no other way out of the outbox)', 30_000)

    await b.m.start()
    await eventually(() => contactOf(b, a.m.peerId)?.avatar === hash, 'B got A\'s picture from its mailbox', 30_000)
    assert.equal(contactOf(b, a.m.peerId)?.name, 'Ada L.')
    assert.equal((await b.m.avatarOf(a.m.peerId)).avatar?.data, b64(photo))
  })

  it('only the latest profile is sent: a newer one supersedes one still queued', { timeout: 90_000 }, async () => {
    const [a, b] = await pair()
    await eventually(() => contactOf(b, a.m.peerId)?.profileName === 'Ada', 'B has A\'s first profile')
    // Both started a session at once (each sent its profile first), so A also owes B a
    // session receipt (messenger.ts, acknowledgeSession): let it go before B leaves.
    await eventually(() => a.m.pendingCount(b.m.peerId) === 0, 'A has nothing else queued for B')
    await b.stop()
    await eventually(() => contactOf(a, b.m.peerId)?.connected === false, 'A sees B gone')
    const before = contactEvents(b.events, a.m.peerId).length
    await a.m.setProfile({ avatar: b64(photo) })
    await a.m.setProfile({ avatar: b64(photo2) })
    await a.m.setProfile({ name: 'Ada the Third' })
    assert.equal(a.m.pendingCount(b.m.peerId), 1, 'one PROFILE envelope waits, not three')
    await b.m.start()
    await eventually(() => contactOf(b, a.m.peerId)?.name === 'Ada the Third', 'B got the latest', 30_000)
    assert.equal(contactOf(b, a.m.peerId)?.avatar, a.m.whoami().avatar)
    assert.equal(contactEvents(b.events, a.m.peerId).length, before + 1, 'B saw one change')
  })

  it('a hostile profile (picture too big, not an image, too many pixels) is dropped by name; nothing changes; the node carries on', { timeout: 60_000 }, async () => {
    const [a, b] = await pair()
    await eventually(() => contactOf(b, a.m.peerId)?.profileName === 'Ada', 'B has A\'s first profile')
    const before = contactOf(b, a.m.peerId)
    const hostile = [
      Buffer.concat([photo.subarray(0, 33), Buffer.alloc(MAX_AVATAR_BYTES)]), // a PNG header, then far too much
      Buffer.from('<script>alert(1)</script>'.repeat(40)), // not an image
      png(4096, 1) // a tiny file that would decode into a huge bitmap
    ]
    for (const avatar of hostile) {
      const id = newMessageId()
      const [frame] = await a.m.sealEnvelopes(b.m.peerId, [{ id, lamport: 9, sentAt: Date.now(), type: 'profile', text: '', profile: { version: Date.now() * 2, name: 'Mallory', avatar, request: false } }])
      assert.ok(frame !== undefined)
      const ack = await sendRaw(a, b, frame)
      assert.deepEqual(ack, { ids: [], rejected: [{ id, error: 'InvalidEnvelopeError' }] })
    }
    assert.ok((b.m.rejections.get('InvalidEnvelopeError') ?? 0) >= hostile.length)
    assert.deepEqual(contactOf(b, a.m.peerId), before, 'nothing changed')
    assert.equal((await b.m.avatarOf(a.m.peerId)).avatar, null)

    // B lives: the session still works and a genuine change still lands.
    await a.m.setProfile({ avatar: b64(photo) })
    await eventually(() => contactOf(b, a.m.peerId)?.avatar === a.m.whoami().avatar, 'a genuine profile after the junk')
    assert.equal(contactOf(b, a.m.peerId)?.name, 'Ada')
  })

  it('a profile from someone who is not a contact is not stored; once one side writes, both learn each other\'s', { timeout: 60_000 }, async () => {
    const a = await peer({ name: 'Ada' })
    const c = await peer({ name: 'Cyd' })
    await a.m.setProfile({ avatar: b64(photo) })
    await c.m.addContact(a.m.whoami().invite) // C's profile goes to A, who does not know C
    await eventually(() => c.m.pendingCount(a.m.peerId) === 0, 'A took C\'s profile (and dropped it)')
    assert.equal(a.m.listContacts().length, 0, 'A added nobody')
    assert.equal(a.events.filter((e) => e.event === 'contact').length, 0)
    assert.equal(contactOf(c, a.m.peerId)?.avatar, undefined, 'A does not answer a stranger')

    await c.m.sendText(a.m.peerId, 'hello, it is Cyd')
    await eventually(() => contactOf(a, c.m.peerId)?.profileName === 'Cyd', 'A (inbound contact now) has C\'s profile')
    assert.equal(contactOf(a, c.m.peerId)?.name, 'Cyd', 'shown by their profile name, not a short id')
    await eventually(() => contactOf(c, a.m.peerId)?.avatar === a.m.whoami().avatar, 'C has A\'s picture')
  })
})
