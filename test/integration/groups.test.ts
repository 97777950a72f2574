import '../../core/polyfill.js'
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { GroupGossip } from '../../core/groups/gossip.js'
import type { GroupMessageView, MessengerEvent } from '../../core/api/contract.js'
import { eventually, removeDir, startPeer, type TestPeer } from '../helpers/messengers.js'
import { startRelay, type TestRelay } from '../helpers/relay.js'
import { Rng } from '../helpers/prng.js'
import { join } from 'node:path'
import * as Y from 'yjs'
import { SignalCipher } from '../../core/crypto/cipher.js'
import { decodeRecord, encodeRecord, signRecord, clientIdOf } from '../../core/groups/record.js'
import { decodeGossipBody } from '../../core/groups/manager.js'
import { loadOrCreateIdentity, peerIdString } from '../../core/identity/identity.js'
import type { GroupId, PeerIdString } from '../../core/ids.js'
import { LevelStore } from '../../core/store/level-store.js'
import { readEnvelope } from '../../core/protocols/dm/codec.js'
import { GroupPayload, PayloadKind } from '../../core/groups/pb/payload.js'
import type { ParleyPubSub } from '../../core/net/node.js'

// Real Messengers (libp2p on 127.0.0.1, level in temp dirs, libsignal), a real relay in this
// process (mailbox, directory, prekey directory). Groups run over gossipsub, 1:1 Signal
// sessions and /parley/group-sync/1.0.0 exactly as in production.

type GroupEvent<E extends MessengerEvent['event']> = Extract<MessengerEvent, { event: E }>

function eventsOf<E extends MessengerEvent['event']> (p: TestPeer, kind: E): Array<GroupEvent<E>> {
  return p.events.filter((e): e is GroupEvent<E> => e.event === kind)
}

function texts (history: GroupMessageView[]): string[] {
  return history.map((m) => m.text)
}

/** Everyone in `members` gets the creator's invite and accepts it. */
async function formGroup (creator: TestPeer, members: TestPeer[], name: string): Promise<string> {
  for (const p of members) await creator.m.addContact(p.m.whoami().invite)
  const { group } = { group: await creator.m.groups.create(name, members.map((p) => p.m.peerId)) }
  for (const p of members) {
    await eventually(() => eventsOf(p, 'group.invite').some((e) => e.group === group), `${p.m.peerId} invited`)
    await p.m.groups.accept(group)
  }
  return group
}

/**
 * Stop `p`, open its Signal state from its data dir, and return the texts of the group
 * messages among `data` that any of `senders` could be decrypted from with it.
 */
async function decryptedTexts (p: TestPeer, senders: PeerIdString[], data: Uint8Array[]): Promise<string[]> {
  await p.stop()
  const key = await loadOrCreateIdentity(p.dir)
  const store = new LevelStore(join(p.dir, 'db'))
  await store.open()
  const cipher = new SignalCipher(store, key, peerIdString(key))
  await cipher.open()
  const out: string[] = []
  try {
    for (const d of data) {
      for (const s of senders) {
        try {
          await cipher.groupDecrypt(s, d, async ({ plaintext }) => {
            out.push(...textsIn(decodeGossipBody(plaintext).record.update))
          })
        } catch {
          // expected for everything sent after the removal: no sender key for it
        }
      }
    }
  } finally {
    await store.close()
  }
  return out
}

/** The message texts a record's yjs update writes. */
function textsIn (update: Uint8Array): string[] {
  const out: string[] = []
  for (const struct of Y.decodeUpdate(update).structs) {
    const value = struct instanceof Y.Item ? struct.content.getContent()[0] as { text?: unknown } : undefined
    if (typeof value?.text === 'string') out.push(value.text)
  }
  return out
}

/** A record signed by `member` (a plain member) that makes itself admin, built on `holder`'s copy of the group. */
async function selfPromotion (holder: TestPeer, member: TestPeer, group: string): Promise<Uint8Array> {
  const doc = new Y.Doc()
  doc.clientID = clientIdOf(member.m.peerId)
  for (const r of holder.m.groups.missing(group as GroupId, Y.encodeStateVector(new Y.Doc()))) Y.applyUpdate(doc, decodeRecord(r).update)
  const sv = Y.encodeStateVector(doc)
  doc.getMap('members').set(member.m.peerId, { role: 'admin', addedBy: member.m.peerId, addedAt: Date.now() })
  const key = await loadOrCreateIdentity(member.dir)
  return encodeRecord(await signRecord(key, group as GroupId, Y.encodeStateAsUpdate(doc, sv)))
}

function pubsubOf (p: TestPeer): ParleyPubSub {
  const pubsub = p.m.libp2p.services.pubsub
  assert.ok(pubsub !== undefined, 'nodes run gossipsub')
  return pubsub
}

async function startPeers (n: number, relay: TestRelay): Promise<TestPeer[]> {
  const peers: TestPeer[] = []
  // Reachable directly and through the relay (a circuit address names the relay holding their mail).
  for (let i = 0; i < n; i++) peers.push(await startPeer({ listen: ['/ip4/127.0.0.1/tcp/0', '/p2p-circuit'], relays: [relay.addr] }))
  return peers
}

/** `n` members on the relay for the length of `fn`, stopped and removed afterwards however it ends. */
async function withPeers (n: number, relay: TestRelay, fn: (peers: TestPeer[]) => Promise<void>): Promise<void> {
  const peers = await startPeers(n, relay)
  try {
    await fn(peers)
  } finally {
    await stopAll(peers)
  }
}

async function stopAll (peers: TestPeer[]): Promise<void> {
  await Promise.allSettled(peers.map(async (p) => { await p.stop() }))
  await Promise.allSettled(peers.map(async (p) => { await removeDir(p.dir) }))
}

describe('groups', () => {
  let relay: TestRelay
  before(async () => { relay = await startRelay() })
  after(async () => { await relay.stop() })

  it('10 members through a relay: 100 messages from random members, everyone shows the same 100 in the same order', { timeout: 180_000 }, async () => {
    await withPeers(10, relay, async (peers) => {
      const [creator, ...rest] = peers as [TestPeer, ...TestPeer[]]
      const group = await formGroup(creator, rest, 'ten')
      const rand = new Rng(10)
      const sent: string[] = []
      for (let i = 0; i < 100; i++) {
        const from = peers[rand.int(peers.length)] as TestPeer
        const text = `m${i} from ${from.m.peerId.slice(-6)}`
        await from.m.groups.send(group, text)
        sent.push(text)
      }
      for (const p of peers) {
        await eventually(() => p.m.groups.history(group, 1000).length >= 100, `${p.m.peerId} has all 100`, 60_000)
      }
      const reference = texts(creator.m.groups.history(group, 1000))
      assert.deepEqual([...reference].sort(), [...sent].sort(), 'the 100 sent, no more, no fewer')
      for (const p of peers) assert.deepEqual(texts(p.m.groups.history(group, 1000)), reference, 'same order everywhere')
      for (const p of peers) assert.equal(p.m.groups.members(group).length, 10)
    })
  })

  it('a member offline during 50 messages has all 50 within 5 s of coming back', { timeout: 120_000 }, async () => {
    await withPeers(4, relay, async (peers) => {
      const [a, b, c, d] = peers as [TestPeer, TestPeer, TestPeer, TestPeer]
      const group = await formGroup(a, [b, c, d], 'offline')
      await a.m.groups.send(group, 'before')
      await eventually(() => d.m.groups.history(group, 10).length === 1, 'D has the first message')
      await d.stop()
      const senders = [a, b, c]
      for (let i = 0; i < 50; i++) await (senders[i % 3] as TestPeer).m.groups.send(group, `while away ${i}`)
      for (const s of senders) await eventually(() => s.m.pendingCount(d.m.peerId) === 0, 'the records for D left the senders\' outboxes (into D\'s relay mailbox)', 30_000)
      const back = Date.now()
      await d.restart()
      await eventually(() => d.m.groups.history(group, 100).length === 51, 'D has all 50', 5_000)
      const tookMs = Date.now() - back
      assert.ok(tookMs <= 5_000, `caught up in ${tookMs} ms`)
      assert.deepEqual(texts(d.m.groups.history(group, 100)), texts(a.m.groups.history(group, 100)))
    })
  })

  it('a removed member reads nothing sent after; a stranger on the topic gets nothing shown', { timeout: 120_000 }, async () => {
    await withPeers(4, relay, async (peers) => {
      const [a, b, c, stranger] = peers as [TestPeer, TestPeer, TestPeer, TestPeer]
      const group = await formGroup(a, [b, c], 'removal')
      await b.m.groups.send(group, 'hello all')
      await eventually(() => c.m.groups.history(group, 10).length === 1, 'C has the first message')
      // C listens on the topic itself, as a removed member with a modified client would.
      const topic = GroupGossip.topicOf(group as GroupId)
      const captured: Uint8Array[] = []
      pubsubOf(c).addEventListener('message', (evt) => { if (evt.detail.topic === topic) captured.push(evt.detail.data) })
      await a.m.groups.remove(group, c.m.peerId)
      await eventually(() => eventsOf(c, 'group.updated').length > 0 && c.m.groups.get(group).state === 'left', 'C learns it was removed')
      pubsubOf(c).subscribe(topic)
      await eventually(() => b.m.groups.members(group).length === 2, 'B sees the removal')
      await new Promise((resolve) => setTimeout(resolve, 500)) // new sender keys reach A and B
      for (let i = 0; i < 5; i++) {
        await a.m.groups.send(group, `secret ${i}`)
        await b.m.groups.send(group, `secret b${i}`)
      }
      await eventually(() => b.m.groups.history(group, 100).length === 11 && a.m.groups.history(group, 100).length === 11, 'A and B have everything')
      assert.deepEqual(texts(c.m.groups.history(group, 100)), ['hello all'], 'C shows nothing after its removal')
      assert.equal(eventsOf(c, 'group.message').filter((e) => e.text.startsWith('secret')).length, 0)
      assert.ok(captured.length >= 10, `C captured the gossip (${captured.length})`)

      // A stranger (never a member) publishes on the topic: nothing shown anywhere.
      pubsubOf(stranger).subscribe(topic)
      await stranger.m.libp2p.dial(a.m.libp2p.getMultiaddrs())
      await eventually(() => pubsubOf(stranger).getSubscribers(topic).length > 0, 'the stranger sees subscribers')
      for (let i = 0; i < 5; i++) await pubsubOf(stranger).publish(topic, new TextEncoder().encode(`spam ${i}`))
      await new Promise((resolve) => setTimeout(resolve, 1000))
      for (const p of [a, b]) {
        assert.equal(p.m.groups.history(group, 100).length, 11)
        assert.equal(eventsOf(p, 'group.message').some((e) => e.from === stranger.m.peerId), false)
      }
      // None of the messages sent after the removal that C captured off the topic decrypts with
      // anything C holds (its own Signal state, opened from its data dir). Gossip may hand C
      // older messages again; those it could always read.
      const read = await decryptedTexts(c, [a.m.peerId, b.m.peerId], captured)
      assert.deepEqual(read.filter((t) => t.startsWith('secret')), [])
      assert.ok(captured.length - read.length >= 10, 'the ten secrets were on the topic, and C could not read them')
    })
  })

  it('an admin adds a member later: it gets the history, and messages flow both ways', { timeout: 120_000 }, async () => {
    await withPeers(4, relay, async (peers) => {
      const [a, b, c, d] = peers as [TestPeer, TestPeer, TestPeer, TestPeer]
      const group = await formGroup(a, [b, c], 'growing')
      await b.m.groups.send(group, 'before D')
      await a.m.addContact(d.m.whoami().invite)
      await a.m.groups.add(group, d.m.peerId)
      await eventually(() => eventsOf(d, 'group.invite').some((e) => e.group === group), 'D invited')
      await d.m.groups.accept(group)
      await eventually(() => d.m.groups.history(group, 10).length === 1, 'D has the history')
      await eventually(() => [a, b, c].every((p) => p.m.groups.members(group).length === 4), 'everyone sees four members')
      await d.m.groups.send(group, 'hello from D')
      await c.m.groups.send(group, 'welcome D')
      for (const p of peers) await eventually(() => p.m.groups.history(group, 10).length === 3, `${p.m.peerId} has all three`)
      const reference = texts(a.m.groups.history(group, 10))
      for (const p of peers) assert.deepEqual(texts(p.m.groups.history(group, 10)), reference)
      assert.equal(eventsOf(b, 'group.message').filter((e) => e.from === d.m.peerId).length, 1)
      // Promote B; B may now rename.
      await a.m.groups.add(group, b.m.peerId, 'admin')
      await eventually(() => b.m.groups.members(group).find((m) => m.peerId === b.m.peerId)?.role === 'admin', 'B is admin at B')
      await b.m.groups.rename(group, 'grown')
      for (const p of peers) await eventually(() => p.m.groups.get(group).name === 'grown', `${p.m.peerId} sees the new name`)
    })
  })

  it('a member flooding the topic with invalid gossip, or naming another member as its author, is penalised; honest delivery carries on', { timeout: 120_000 }, async () => {
    await withPeers(4, relay, async (peers) => {
      const [a, b, c, bad] = peers as [TestPeer, TestPeer, TestPeer, TestPeer]
      const group = await formGroup(a, [b, c, bad], 'flood')
      await a.m.groups.send(group, 'warm-up')
      for (const p of peers) await eventually(() => p.m.groups.history(group, 10).length === 1, 'everyone has the warm-up')
      const topic = GroupGossip.topicOf(group as GroupId)
      await eventually(() => pubsubOf(bad).getSubscribers(topic).length >= 3, 'the member sees the others on the topic')
      const rand = new Rng(9)
      // Gossip payloads name their author (core/groups/gossip.ts): [1][length][peer id][ciphertext].
      const naming = (author: string, body: Uint8Array): Uint8Array => Uint8Array.from([1, author.length, ...new TextEncoder().encode(author), ...body])
      for (let i = 0; i < 10; i++) await pubsubOf(bad).publish(topic, rand.bytes(64 + rand.int(200)))
      // Garbage that names A as its author: it does not decrypt under A's sender key.
      for (let i = 0; i < 10; i++) await pubsubOf(bad).publish(topic, naming(a.m.peerId, rand.bytes(64 + rand.int(200))))
      // What the member's validator sees (direct gossip is delivered without a 'message' event).
      const seen: Uint8Array[] = []
      const validator = pubsubOf(bad).topicValidators.get(topic)
      assert.ok(validator !== undefined)
      pubsubOf(bad).topicValidators.set(topic, async (peer, msg) => {
        seen.push(msg.data)
        return await validator(peer, msg)
      })
      const honest: string[] = []
      for (let i = 0; i < 30; i++) {
        const text = `honest ${i}`
        await ([a, b, c][i % 3] as TestPeer).m.groups.send(group, text)
        honest.push(text)
      }
      for (const p of [a, b, c]) {
        await eventually(() => honest.every((t) => p.m.groups.history(group, 100).some((m) => m.text === t)), `${p.m.peerId} has every honest message`, 30_000)
      }
      for (const p of [a, b, c]) {
        // Scores are recomputed at each heartbeat (1 s).
        await eventually(() => pubsubOf(p).getScore(bad.m.peerId) < 0, `the flooding member's score at ${p.m.peerId} goes negative`, 5_000)
        assert.equal(p.m.groups.history(group, 100).length, 31, 'nothing of the garbage is shown')
      }
      // C's real ciphertext, passed off as A's: it names A but was sealed with C's sender key.
      const fromC = seen.find((d) => new TextDecoder().decode(d.subarray(2, 2 + (d[1] as number))) === c.m.peerId)
      assert.ok(fromC !== undefined, 'the member saw gossip from C')
      await pubsubOf(bad).publish(topic, naming(a.m.peerId, fromC.subarray(2 + (fromC[1] as number))))
      await new Promise((resolve) => setTimeout(resolve, 1_000))
      for (const p of [a, b, c]) {
        const history = p.m.groups.history(group, 100)
        assert.equal(history.length, 31, 'the re-labelled message is not shown again')
        assert.ok(history.every((m) => m.from !== a.m.peerId || ['warm-up', ...honest.filter((_, i) => i % 3 === 0)].includes(m.text)), 'nothing of C\'s is shown as A\'s')
      }
    })
  })

  it('members all connected to the author get its messages straight from it: nobody forwards them; with a member away, the mesh does', { timeout: 120_000 }, async () => {
    await withPeers(3, relay, async (peers) => {
      const [a, b, c] = peers as [TestPeer, TestPeer, TestPeer]
      const group = await formGroup(a, [b, c], 'direct')
      const topic = GroupGossip.topicOf(group as GroupId)
      await eventually(() => peers.every((p) => pubsubOf(p).getSubscribers(topic).length === 2), 'everyone sees the others on the topic')
      // gossipsub (internal method) forwards each message a topic validator accepts; count the calls.
      const forwards = new Map<TestPeer, number>()
      for (const p of peers) {
        const pubsub = pubsubOf(p) as unknown as { forwardMessage: (...args: unknown[]) => unknown }
        const forward = pubsub.forwardMessage.bind(pubsub)
        pubsub.forwardMessage = (...args: unknown[]) => {
          forwards.set(p, (forwards.get(p) ?? 0) + 1)
          return forward(...args)
        }
      }
      const texts = ['one', 'two', 'three', 'four', 'five', 'six']
      for (let i = 0; i < texts.length; i++) await (peers[i % 3] as TestPeer).m.groups.send(group, texts[i] as string)
      for (const p of peers) {
        await eventually(() => texts.every((t) => p.m.groups.history(group, 20).some((m) => m.text === t)), `${p.m.peerId} has every message`)
      }
      assert.deepEqual([...forwards.values()], [], 'no member forwarded a message its author sent to everyone')

      await c.stop()
      await eventually(() => !pubsubOf(a).getSubscribers(topic).some((p) => p.toString() === c.m.peerId), 'a sees c gone')
      await a.m.groups.send(group, 'while c is away')
      await eventually(() => b.m.groups.history(group, 20).some((m) => m.text === 'while c is away'), 'b has it')
      assert.ok((forwards.get(b) ?? 0) >= 1, 'b passed it on along the mesh')
    })
  })

  it('a member connected to the author but not on the topic (yet) gets a 1:1 copy at once, not at the next sync', { timeout: 60_000 }, async () => {
    await withPeers(2, relay, async (peers) => {
      const [a, b] = peers as [TestPeer, TestPeer]
      const group = await formGroup(a, [b], 'not yet subscribed')
      const topic = GroupGossip.topicOf(group as GroupId)
      await eventually(() => pubsubOf(a).getSubscribers(topic).some((p) => p.toString() === b.m.peerId), 'a sees b on the topic')
      // What a just-restarted member looks like for a moment: connected, its subscription not seen yet.
      pubsubOf(b).unsubscribe(topic)
      await eventually(() => !pubsubOf(a).getSubscribers(topic).some((p) => p.toString() === b.m.peerId), 'a sees b leave the topic')
      assert.ok(a.m.libp2p.getConnections().some((c) => c.remotePeer.toString() === b.m.peerId), 'still connected')
      await a.m.groups.send(group, 'while b is off the topic')
      // Group-sync would bring it too, but only at the next anti-entropy round (every 30 s).
      await eventually(() => b.m.groups.history(group, 10).some((m) => m.text === 'while b is off the topic'), 'b has it', 5_000)
    })
  })

  it('a member\'s group keeps every record across restarts (its counters are stored apart from the group info)', { timeout: 120_000 }, async () => {
    await withPeers(2, relay, async (peers) => {
      const [a, b] = peers as [TestPeer, TestPeer]
      const group = await formGroup(a, [b], 'restarts')
      const sent: string[] = []
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < 3; i++) {
          sent.push(`round ${round} message ${i}`)
          await a.m.groups.send(group, sent.at(-1) as string)
        }
        await a.restart()
      }
      // Rebuilt from its stored records at each start: a record written over another would be missing.
      assert.deepEqual(a.m.groups.history(group, 100).map((m) => m.text), sent, 'nothing written before a restart was overwritten after it')
      // Each stop came moments after a send: what b had not got yet was in a's outbox.
      await eventually(() => b.m.groups.history(group, 100).length === sent.length, 'b has all nine', 5_000)
      assert.deepEqual(b.m.groups.history(group, 100).map((m) => m.text), sent)
    })
  })

  it('a record sent just before its author stops still goes to the members it had not reached: its 1:1 copies are in the outbox', { timeout: 90_000 }, async () => {
    await withPeers(2, relay, async (peers) => {
      const [a, b] = peers as [TestPeer, TestPeer]
      const group = await formGroup(a, [b], 'stopping')
      await b.stop()
      // Nobody is on the topic, so b's copy is queued (sent COPY_DELAY_MS later); a stops first.
      const sent = await a.m.groups.send(group, 'sent as a stops')
      await a.stop()
      const store = new LevelStore(join(a.dir, 'db'))
      await store.open()
      let copies: string[]
      try {
        copies = (await store.listOutbox())
          .filter((r) => r.to === b.m.peerId)
          .map((r) => readEnvelope(r.frame))
          .filter((e) => e.type === 'group' && e.body !== undefined)
          .map((e) => GroupPayload.decode(e.body as Uint8Array))
          .filter((p) => p.kind === PayloadKind.RECORDS && p.group === group)
          .flatMap((p) => p.records.flatMap((r) => textsIn(decodeRecord(r).update)))
      } finally {
        await store.close()
      }
      assert.deepEqual(copies, ['sent as a stops'], 'the copy for b was kept for the next start')
      // And it gets there: b comes back, a too, with no sync round needed.
      await b.restart()
      await a.restart()
      await eventually(() => b.m.groups.history(group, 10).some((m) => m.id === sent.id), 'b has it', 10_000)
    })
  })

  it('records waiting in a member\'s relay mailbox reach its groups when it starts, with every other member offline', { timeout: 90_000 }, async () => {
    await withPeers(2, relay, async (peers) => {
      const [a, b] = peers as [TestPeer, TestPeer]
      const group = await formGroup(a, [b], 'mailbox')
      await a.m.groups.send(group, 'before')
      await eventually(() => b.m.groups.history(group, 10).length === 1, 'b has the first message')
      await b.stop()
      const sent: string[] = []
      for (let i = 0; i < 3; i++) {
        sent.push(`while b is away ${i}`)
        await a.m.groups.send(group, sent.at(-1) as string)
      }
      // A copy for a member being dialled is held up to 30 s (COPY_HOLD_MS), then deposited.
      await eventually(() => relay.mail.usageOf(b.m.peerId).count > 0 && a.m.pendingCount(b.m.peerId) === 0, 'a deposited b\'s copies in b\'s relay mailbox', 60_000)
      // Nobody else holds these records now: the mailbox is the only way to b.
      await a.stop()
      await b.restart()
      await eventually(() => b.m.groups.history(group, 10).length === 4, 'b has the three from its mailbox', 5_000)
      assert.deepEqual(texts(b.m.groups.history(group, 10)), ['before', ...sent])
    })
  })

  it('a member that starts and dials another (its outbox has mail for it) syncs with it at once: a record only that member holds arrives within 5 s, not at the next anti-entropy round', { timeout: 120_000 }, async () => {
    // No relay here: a record's 1:1 copy would wait in a relay mailbox and arrive without a sync.
    const peers = [await startPeer(), await startPeer(), await startPeer()]
    try {
      // `lo` syncs at once when a connection opens (the smaller peer id); `hi` is the one restarting.
      const [first, second, c] = peers as [TestPeer, TestPeer, TestPeer]
      const [lo, hi] = first.m.peerId < second.m.peerId ? [first, second] : [second, first]
      const group = await formGroup(lo, [hi, c], 'starting')
      // Without a relay's directory a restarted node knows only its contacts' addresses.
      await hi.m.addContact(lo.m.whoami().invite)
      await lo.m.groups.send(group, 'hello')
      await eventually(() => hi.m.groups.history(group, 5).length === 1 && c.m.groups.history(group, 5).length === 1, 'everyone has the first message')
      // hi writes while the others are away: its copies for them wait in its outbox, so its
      // next start dials lo at once (the outbox drains as soon as the node is up).
      await lo.stop()
      await c.stop()
      await hi.m.groups.send(group, 'from hi while the others are away')
      await hi.stop()
      // c writes while hi is away, and only lo gets it: c's copy for hi stays in c's outbox.
      await lo.restart()
      await c.restart()
      const onlyLo = await c.m.groups.send(group, 'only lo has this')
      await eventually(() => lo.m.groups.history(group, 5).some((m) => m.id === onlyLo.id), 'lo has c\'s record')
      await c.stop()
      const back = Date.now()
      await hi.restart()
      // Anti-entropy runs every 30 s; the sync a connection starts runs at once.
      await eventually(() => hi.m.groups.history(group, 5).some((m) => m.id === onlyLo.id), 'hi has c\'s record from lo', 5_000)
      const tookMs = Date.now() - back
      assert.ok(tookMs < 5_000, `hi synced with lo ${tookMs} ms after it started`)
    } finally {
      await stopAll(peers)
    }
  })

  it('partition: two halves chat apart, heal, and converge on the same messages and members', { timeout: 180_000 }, async () => {
    // No relay here (its mailboxes would bridge the halves); everyone knows everyone's address.
    let partitioned = false
    const half = new Map<string, number>()
    const gaterFor = (mine: () => string) => {
      const deny = async (peer: { toString: () => string }): Promise<boolean> =>
        partitioned && half.get(peer.toString()) !== undefined && half.get(peer.toString()) !== half.get(mine())
      return { denyDialPeer: deny, denyInboundEncryptedConnection: deny }
    }
    const peers: TestPeer[] = []
    for (let i = 0; i < 6; i++) {
      const holder: { p?: TestPeer } = {}
      holder.p = await startPeer({ listen: ['/ip4/127.0.0.1/tcp/0'], connectionGater: gaterFor(() => holder.p?.m.peerId ?? '') })
      peers.push(holder.p)
    }
    try {
      peers.forEach((p, i) => half.set(p.m.peerId, i < 3 ? 0 : 1))
      for (const x of peers) for (const y of peers) if (x !== y) await x.m.addContact(y.m.whoami().invite)
      const [a, ...rest] = peers as [TestPeer, ...TestPeer[]]
      const group = await formGroup(a, rest, 'partition')
      await a.m.groups.send(group, 'all together')
      for (const p of peers) await eventually(() => p.m.groups.history(group, 10).length === 1, 'everyone has the first message')
      const left = peers.slice(0, 3)
      const right = peers.slice(3)
      partitioned = true
      for (const x of left) for (const y of right) await x.m.libp2p.hangUp(y.m.libp2p.peerId).catch(() => {})
      await a.m.groups.rename(group, 'partition (renamed)')
      for (let i = 0; i < 10; i++) {
        await (left[i % 3] as TestPeer).m.groups.send(group, `left ${i}`)
        await (right[i % 3] as TestPeer).m.groups.send(group, `right ${i}`)
      }
      await new Promise((resolve) => setTimeout(resolve, 1000))
      for (const p of left) assert.equal(p.m.groups.history(group, 100).some((m) => m.text.startsWith('right')), false, 'the halves really were apart')
      partitioned = false
      for (const x of left) for (const y of right) await x.m.libp2p.dial(y.m.libp2p.peerId).catch(() => {})
      for (const p of peers) await eventually(() => p.m.groups.history(group, 100).length === 21, `${p.m.peerId} converged`, 60_000)
      const reference = texts(a.m.groups.history(group, 100))
      for (const p of peers) {
        assert.deepEqual(texts(p.m.groups.history(group, 100)), reference)
        assert.deepEqual(p.m.groups.members(group).map((m) => m.peerId).sort(), peers.map((x) => x.m.peerId).sort())
        assert.equal(p.m.groups.get(group).name, 'partition (renamed)')
      }
    } finally {
      await stopAll(peers)
    }
  })

  it('hostile records handed to a member are refused; its group and process carry on', { timeout: 60_000 }, async () => {
    await withPeers(3, relay, async (peers) => {
      const [a, b, c] = peers as [TestPeer, TestPeer, TestPeer]
      const group = await formGroup(a, [b, c], 'hostile')
      await a.m.groups.send(group, 'one')
      await eventually(() => b.m.groups.history(group, 10).length === 1, 'B has the first message')
      const rand = new Rng(5)
      const junk: Uint8Array[] = [new Uint8Array(0), new Uint8Array([1, 2, 3])]
      for (let i = 0; i < 50; i++) junk.push(rand.bytes(1 + rand.int(400)))
      // Through the same entry point group-sync uses.
      await b.m.groups.receive(group as GroupId, c.m.peerId, junk)
      // A member without the right to change the member list makes itself admin: refused by B.
      const forged = await selfPromotion(b, c, group)
      await b.m.groups.receive(group as GroupId, c.m.peerId, [forged])
      assert.equal(b.m.groups.members(group).find((m) => m.peerId === c.m.peerId)?.role, 'member')
      assert.equal(b.m.groups.history(group, 10).length, 1)
      await a.m.groups.send(group, 'two')
      await eventually(() => b.m.groups.history(group, 10).length === 2, 'B still works')
    })
  })
})
