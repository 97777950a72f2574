import '../../core/polyfill.js'
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { performance } from 'node:perf_hooks'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify, type Identify } from '@libp2p/identify'
import { gossipsub, StrictSign, type GossipSub } from '@libp2p/gossipsub'
import { createNode, GOSSIP_SCORE_THRESHOLDS, IDONTWANT_MIN_BYTES, type ParleyLibp2p, type ParleyPubSub } from '../../core/net/node.js'
import { GroupGossip, type GossipVerdict } from '../../core/groups/gossip.js'
import { newGroupId, type GroupId, type PeerIdString } from '../../core/ids.js'
import { createRelayNode, DEFAULT_RELAY_LIMITS } from '../../relay/relay-node.js'
import { eventually } from '../helpers/messengers.js'

interface Delivery { group: GroupId, from: PeerIdString, text: string, at: number }

/** A real libp2p node (TCP on 127.0.0.1) with a GroupGossip whose handler records what it gets. */
interface GossipPeer {
  node: ParleyLibp2p
  pubsub: ParleyPubSub
  gossip: GroupGossip
  id: PeerIdString
  got: Delivery[]
  /** Verdict for each payload (default 'accept'); may throw. */
  verdict: (text: string) => GossipVerdict
  /** Handler calls in flight at once for one group, at most. */
  maxInFlight: number
}

const te = new TextEncoder()
const td = new TextDecoder()
const nodes: Array<{ stop: () => Promise<void> }> = []

async function startPeer (listen = ['/ip4/127.0.0.1/tcp/0']): Promise<GossipPeer> {
  const node = await createNode({ privateKey: await generateKeyPair('Ed25519'), listen, mdns: false, inboundConnectionThreshold: 1000 })
  await node.start()
  const pubsub = node.services.pubsub
  assert.ok(pubsub !== undefined)
  let inFlight = 0
  const peer: GossipPeer = {
    node,
    pubsub,
    id: node.peerId.toString() as PeerIdString,
    got: [],
    verdict: () => 'accept',
    maxInFlight: 0,
    gossip: new GroupGossip(pubsub, node.peerId, async (group, from, data) => {
      inFlight++
      peer.maxInFlight = Math.max(peer.maxInFlight, inFlight)
      try {
        const text = td.decode(data)
        // Yield once so overlapping calls would show up in maxInFlight.
        await new Promise((resolve) => setImmediate(resolve))
        const verdict = peer.verdict(text)
        if (verdict === 'accept' || verdict === 'deliver') peer.got.push({ group, from, text, at: performance.now() })
        return verdict
      } finally {
        inFlight--
      }
    })
  }
  nodes.push({ stop: async () => { peer.gossip.stop(); await node.stop() } })
  return peer
}

async function connect (a: Libp2p, b: Libp2p): Promise<void> {
  const addr = b.getMultiaddrs()[0]
  assert.ok(addr !== undefined)
  await a.dial(addr)
}

/** n peers, each dialled by every other once (a full mesh of connections). */
async function fullMesh (n: number): Promise<GossipPeer[]> {
  const peers = await Promise.all(Array.from({ length: n }, async () => await startPeer()))
  const dials: Array<Promise<void>> = []
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) dials.push(connect(peers[i]!.node, peers[j]!.node))
  }
  await Promise.all(dials)
  return peers
}

/** Wait until every peer in `members` sees all the others subscribed to the group. */
async function settled (members: GossipPeer[], group: GroupId): Promise<void> {
  await eventually(() => members.every((p) => {
    const subs = new Set(p.gossip.subscribers(group))
    return members.every((q) => q === p || subs.has(q.id))
  }), 'subscriptions propagated', 10_000)
}

/** Three fully connected peers that all joined one new group, subscriptions settled. */
async function joinedTrio (): Promise<{ a: GossipPeer, b: GossipPeer, c: GossipPeer, group: GroupId }> {
  const [a, b, c] = await fullMesh(3)
  assert.ok(a !== undefined && b !== undefined && c !== undefined)
  const group = newGroupId()
  for (const p of [a, b, c]) p.gossip.join(group)
  await settled([a, b, c], group)
  return { a, b, c, group }
}

/**
 * A line a - b - c that joined one new group: a and c are not connected, so everything a sends
 * reaches c only through b's forwards (b has c in its mesh).
 */
async function joinedLine (): Promise<{ a: GossipPeer, b: GossipPeer, c: GossipPeer, group: GroupId }> {
  const [a, b, c] = await Promise.all([startPeer(), startPeer(), startPeer()])
  await connect(a.node, b.node)
  await connect(b.node, c.node)
  const group = newGroupId()
  for (const p of [a, b, c]) p.gossip.join(group)
  await eventually(() => a.gossip.subscribers(group).includes(b.id) && c.gossip.subscribers(group).includes(b.id) &&
    b.gossip.subscribers(group).length === 2, 'line subscribed', 10_000)
  // b must have c in its mesh to forward (grafted on subscribe).
  await eventually(() => b.pubsub.getMeshPeers(GroupGossip.topicOf(group)).includes(c.id), 'b meshed with c', 5_000)
  return { a, b, c, group }
}

const texts = (p: GossipPeer, group?: GroupId): string[] => p.got.filter((d) => group === undefined || d.group === group).map((d) => d.text)
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

function percentile (sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN
}

describe('group gossip over real libp2p nodes', () => {
  after(async () => {
    await Promise.all(nodes.map(async (n) => { await n.stop() }))
  })

  it('3 nodes: every member gets a message exactly once, a non-member nothing, the author not its own', async () => {
    const [a, b, c, outsider] = await fullMesh(4)
    assert.ok(a !== undefined && b !== undefined && c !== undefined && outsider !== undefined)
    const group = newGroupId()
    const other = newGroupId()
    for (const p of [a, b, c]) p.gossip.join(group)
    outsider.gossip.join(other)
    await settled([a, b, c], group)
    assert.ok(!new Set(a.gossip.subscribers(group)).has(outsider.id))

    const started = performance.now()
    const { recipients, peers } = await a.gossip.publish(group, te.encode('hello'))
    assert.equal(recipients, 2)
    assert.deepEqual([...peers].sort(), [b.id, c.id].sort())
    await eventually(() => texts(b).length === 1 && texts(c).length === 1, 'b and c got it', 5_000)
    console.log(`# 3 nodes: delivered to both in ${(Math.max(b.got[0]!.at, c.got[0]!.at) - started).toFixed(1)} ms`)
    await sleep(500)
    assert.deepEqual(texts(b), ['hello'])
    assert.deepEqual(texts(c), ['hello'])
    assert.equal(b.got[0]?.from, a.id, 'from is the author the payload names')
    assert.equal(b.got[0]?.group, group)
    assert.deepEqual(texts(a), [], 'no echo to the author')
    assert.deepEqual(texts(outsider), [], 'a node that did not join gets nothing')
    assert.equal(outsider.pubsub.topicValidators.has(GroupGossip.topicOf(group)), false)
  })

  it('IDONTWANT notices go out for large payloads only', async () => {
    const { a, b, c, group } = await joinedTrio()
    // Counted around gossipsub's own method (it runs as before): called once per message
    // received that is at least idontwantMinDataSize, before validation.
    let notices = 0
    for (const p of [b, c]) {
      const service = p.pubsub as unknown as { sendIDontWants: (...args: unknown[]) => void }
      const original = service.sendIDontWants.bind(service)
      service.sendIDontWants = (...args: unknown[]) => { notices++; original(...args) }
    }
    await a.gossip.publish(group, te.encode('x'.repeat(1024)))
    await eventually(() => texts(b).length === 1 && texts(c).length === 1, 'the 1 KiB message arrived', 5_000)
    assert.equal(notices, 0, 'no notice for a chat-sized message')
    await a.gossip.publish(group, te.encode('y'.repeat(IDONTWANT_MIN_BYTES)))
    await eventually(() => texts(b).length === 2 && texts(c).length === 2, 'the 16 KiB message arrived', 5_000)
    assert.equal(notices, 2, 'each receiver tells its mesh it has the large one')
  })

  it('publish with nobody subscribed resolves with 0 recipients', async () => {
    const [lonely, stranger] = await fullMesh(2)
    assert.ok(lonely !== undefined && stranger !== undefined)
    const group = newGroupId()
    lonely.gossip.join(group)
    assert.deepEqual(await lonely.gossip.publish(group, te.encode('anyone?')), { recipients: 0, peers: [] })
    await sleep(300)
    assert.deepEqual(texts(stranger), [])
    await assert.rejects(lonely.gossip.publish(group, new Uint8Array(128 * 1024 + 1)), { name: 'MessageTooLargeError' })
  })

  it('leave stops delivery and removes the validator', async () => {
    const { a, b, c, group } = await joinedTrio()
    c.gossip.leave(group)
    assert.equal(c.pubsub.topicValidators.has(GroupGossip.topicOf(group)), false)
    await eventually(() => !a.gossip.subscribers(group).includes(c.id) && !b.gossip.subscribers(group).includes(c.id), 'unsubscribe propagated', 5_000)
    assert.equal((await a.gossip.publish(group, te.encode('after leave'))).recipients, 1)
    await eventually(() => texts(b).length === 1, 'b got it', 5_000)
    await sleep(500)
    assert.deepEqual(texts(c), [])
    assert.deepEqual(c.gossip.groups(), [])
  })

  it('reject stops propagation and lowers the sender\'s score; accept passes; a throwing handler ignores; repeat offenders are graylisted', async () => {
    const { a, b, c, group } = await joinedLine()
    b.verdict = (text) => {
      if (text.startsWith('bad')) return 'reject'
      if (text.startsWith('boom')) throw new Error('handler failure')
      return 'accept'
    }

    await a.gossip.publish(group, te.encode('good 1'))
    await eventually(() => texts(c).includes('good 1'), 'accepted message forwarded by b to c', 5_000)

    const before = b.pubsub.getScore(a.id)
    await a.gossip.publish(group, te.encode('boom'))
    await sleep(1_100) // scores are cached for one heartbeat
    assert.ok(b.pubsub.getScore(a.id) >= before, 'a throwing handler (ignore) does not penalise')

    await a.gossip.publish(group, te.encode('bad 1'))
    await eventually(() => b.pubsub.getScore(a.id) < 0, 'a penalised at b', 5_000)
    const afterOne = b.pubsub.getScore(a.id)
    console.log(`# score of a at b: ${before.toFixed(2)} before, ${afterOne.toFixed(2)} after one reject`)
    await a.gossip.publish(group, te.encode('good 2'))
    await eventually(() => texts(c).includes('good 2'), 'still accepted after one reject', 5_000)
    assert.ok(!texts(c).includes('bad 1') && !texts(c).includes('boom'), 'rejected and ignored messages were not forwarded')
    assert.deepEqual(texts(b), ['good 1', 'good 2'])
    assert.ok(c.pubsub.getScore(b.id) >= 0, 'b forwarded only what it accepted, so c has nothing against b')

    // Keep sending invalid gossip: graylisted, after which b drops a's RPCs unread.
    for (let i = 2; i <= 4; i++) await a.gossip.publish(group, te.encode(`bad ${i}`))
    await eventually(() => b.pubsub.getScore(a.id) < GOSSIP_SCORE_THRESHOLDS.graylistThreshold, 'a graylisted at b', 5_000)
    console.log(`# score of a at b after 4 rejects: ${b.pubsub.getScore(a.id).toFixed(2)}`)
    await a.gossip.publish(group, te.encode('good 3'))
    await sleep(1_000)
    assert.ok(!texts(b).includes('good 3') && !texts(c).includes('good 3'), 'a graylisted peer is not heard')
  })

  it('deliver: handled where it arrives, not forwarded, and nobody is penalised', async () => {
    const { a, b, c, group } = await joinedLine()
    b.verdict = (text) => text.startsWith('direct') ? 'deliver' : 'accept'
    await a.gossip.publish(group, te.encode('direct 1'))
    await a.gossip.publish(group, te.encode('forward 1'))
    await eventually(() => texts(c).includes('forward 1'), 'accepted message forwarded by b to c', 5_000)
    await sleep(500)
    assert.deepEqual(texts(b), ['direct 1', 'forward 1'], 'b handled both')
    assert.deepEqual(texts(c), ['forward 1'], 'b did not forward what it delivered')
    await sleep(1_100) // scores are cached for one heartbeat
    assert.ok(b.pubsub.getScore(a.id) >= 0 && c.pubsub.getScore(b.id) >= 0, 'nobody penalised')
  })

  it('signed messages, payloads that name no author and oversized ones are dropped before the handler', async () => {
    const [honest] = await fullMesh(1)
    assert.ok(honest !== undefined)
    const group = newGroupId()
    const topic = GroupGossip.topicOf(group)
    honest.gossip.join(group)

    // A hostile node that signs its messages (StrictSign): Parley's gossip is unsigned.
    const signing = await createLibp2p<{ identify: Identify, pubsub: GossipSub }>({
      privateKey: await generateKeyPair('Ed25519'),
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: {
        identify: identify(),
        pubsub: gossipsub({ globalSignaturePolicy: StrictSign, allowPublishToZeroTopicPeers: true, fallbackToFloodsub: false })
      }
    })
    nodes.push({ stop: async () => { await signing.stop() } })
    // Parley nodes that skip GroupGossip and publish raw bytes on the service: no author
    // header, a header naming something that is not a peer id, a header cut short, and a
    // payload one byte over the limit after a valid header.
    const raw = await startPeer()
    const big = await startPeer()
    await connect(signing, honest.node)
    await connect(raw.node, honest.node)
    await connect(big.node, honest.node)
    signing.services.pubsub.subscribe(topic)
    raw.pubsub.subscribe(topic)
    big.pubsub.subscribe(topic)
    await eventually(() => honest.gossip.subscribers(group).length === 3 &&
      signing.services.pubsub.getSubscribers(topic).length === 1 && raw.pubsub.getSubscribers(topic).length === 1 &&
      big.pubsub.getSubscribers(topic).length === 1, 'hostile peers subscribed', 10_000)

    const header = (id: string): Uint8Array => Uint8Array.from([1, id.length, ...te.encode(id)])
    const withHeader = (id: string, body: Uint8Array): Uint8Array => Uint8Array.from([...header(id), ...body])
    assert.equal((await signing.services.pubsub.publish(topic, withHeader(signing.peerId.toString(), te.encode('signed')))).recipients.length, 1)
    for (const bad of [te.encode('no header at all'), withHeader('not-a-peer-id', te.encode('x')), header(raw.id).subarray(0, 10)]) {
      assert.equal((await raw.pubsub.publish(topic, bad)).recipients.length, 1)
    }
    const limit = 128 * 1024
    assert.equal((await big.pubsub.publish(topic, withHeader(big.id, new Uint8Array(limit + 1).fill(0x61)))).recipients.length, 1)
    const signingId = signing.peerId.toString()
    await eventually(() => honest.pubsub.getScore(signingId) < 0 && honest.pubsub.getScore(raw.id) < 0 && honest.pubsub.getScore(big.id) < 0, 'all three penalised', 5_000)
    assert.deepEqual(texts(honest), [], 'the handler never saw them')

    // A payload at the limit from the same node does reach the handler, from the author it names.
    await big.pubsub.publish(topic, withHeader(big.id, new Uint8Array(limit).fill(0x62)))
    await eventually(() => texts(honest).length === 1, 'a 128 KiB payload is accepted', 5_000)
    assert.equal(honest.got[0]?.from, big.id)
  })

  it('does not run over a limited (relayed) connection', async () => {
    const relay = await createRelayNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], limits: DEFAULT_RELAY_LIMITS })
    await relay.start()
    nodes.push({ stop: async () => { await relay.stop() } })
    // Both listen only on /p2p-circuit: the relay is the only way between them.
    const [a, b] = await Promise.all([startPeer(['/p2p-circuit']), startPeer(['/p2p-circuit'])])
    for (const p of [a, b]) await connect(p.node, relay)
    await eventually(() => b.node.getMultiaddrs().some((m) => m.toString().includes('/p2p-circuit')), 'b has a relay reservation', 10_000)
    const circuit = b.node.getMultiaddrs().find((m) => m.toString().includes('/p2p-circuit'))
    assert.ok(circuit !== undefined)
    const conn = await a.node.dial(circuit)
    assert.equal(conn.limits !== undefined, true, 'the relayed connection is limited')
    const group = newGroupId()
    a.gossip.join(group)
    b.gossip.join(group)
    await sleep(1_500)
    assert.deepEqual(a.gossip.subscribers(group), [], 'no gossipsub stream over the circuit')
    assert.deepEqual(await a.gossip.publish(group, te.encode('through the relay?')), { recipients: 0, peers: [] })
    await sleep(300)
    assert.deepEqual(texts(b), [])
  })

  it('10 nodes: each message reaches every member exactly once; fan-out latency for 100 messages', async () => {
    const n = 10
    const peers = await fullMesh(n)
    const group = newGroupId()
    const t0 = performance.now()
    for (const p of peers) p.gossip.join(group)
    await settled(peers, group)
    console.log(`# 10 nodes: subscriptions settled ${(performance.now() - t0).toFixed(0)} ms after join`)

    // Everyone publishes once.
    for (const [i, p] of peers.entries()) await p.gossip.publish(group, te.encode(`hello from ${i}`))
    await eventually(() => peers.every((p) => p.got.length === n - 1), 'everyone got everyone else\'s', 5_000)

    // 100 messages from random members, one at a time: publish -> every other member's handler.
    const M = 100
    const allIn: number[] = []
    const each: number[] = []
    for (let k = 0; k < M; k++) {
      const author = peers[Math.floor(Math.random() * n)]!
      const text = `m${k}`
      const start = performance.now()
      await author.gossip.publish(group, te.encode(text))
      const others = peers.filter((p) => p !== author)
      await eventually(() => others.every((p) => p.got.some((d) => d.text === text)), `m${k} everywhere`, 5_000)
      const times = others.map((p) => p.got.find((d) => d.text === text)!.at - start)
      each.push(...times)
      allIn.push(Math.max(...times))
    }
    await sleep(500)
    for (const p of peers) {
      const got = texts(p).filter((t) => t.startsWith('m'))
      assert.equal(new Set(got).size, got.length, 'no duplicates')
      assert.equal(p.got.length, n - 1 + got.length)
      assert.ok(p.maxInFlight <= 1, 'handler calls for one group never overlap')
    }
    assert.equal(peers.reduce((s, p) => s + texts(p).filter((t) => t.startsWith('m')).length, 0), M * (n - 1))
    allIn.sort((x, y) => x - y)
    each.sort((x, y) => x - y)
    console.log(`# 10 nodes, ${M} messages: until all 9 have it p50 ${percentile(allIn, 50).toFixed(2)} ms, p99 ${percentile(allIn, 99).toFixed(2)} ms, max ${allIn[allIn.length - 1]!.toFixed(2)} ms`)
    console.log(`# 10 nodes, ${M} messages: per delivery p50 ${percentile(each, 50).toFixed(2)} ms, p99 ${percentile(each, 99).toFixed(2)} ms`)
  })
})
