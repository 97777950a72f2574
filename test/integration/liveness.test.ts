import '../../core/polyfill.js'
import { after, afterEach, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Stream } from '@libp2p/interface'
import { PING_PROTOCOL } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import { liveness, type Liveness, type LivenessInit, type LivenessPing } from '../../core/net/liveness.js'
import { eventually } from '../helpers/messengers.js'
import { Cluster } from '../helpers/node-process.js'

// Liveness (core/net/liveness.ts) on real libp2p nodes over TCP on 127.0.0.1 (Noise, Yamux).
// The watching node runs it with short intervals and notes every ping through `onPing`. The
// hung peer is a real `parley node` process frozen with SIGSTOP: its kernel still holds the
// TCP connection open, but nothing in it answers.

const nodes: Libp2p[] = []
const cluster = new Cluster()
afterEach(async () => {
  await Promise.allSettled(nodes.splice(0).map(async (n) => { await n.stop() }))
})
after(async () => { await cluster.cleanup() })

async function watcher (init: LivenessInit): Promise<{ node: Libp2p<{ liveness: Liveness }>, pings: LivenessPing[] }> {
  const pings: LivenessPing[] = []
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux({ enableKeepAlive: false })],
    connectionMonitor: { enabled: false },
    services: { liveness: liveness({ ...init, onPing: (p) => { pings.push(p) } }) }
  })
  nodes.push(node)
  return { node, pings }
}

/** A plain peer (Yamux keep-alive off, no ping protocol); `pingStreams` counts /ipfs/ping/1.0.0 streams opened to it. */
async function peer (): Promise<{ node: Libp2p, pingStreams: () => number }> {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux({ enableKeepAlive: false })],
    connectionMonitor: { enabled: false }
  })
  nodes.push(node)
  let streams = 0
  await node.handle(PING_PROTOCOL, (stream: Stream) => { streams++; stream.abort(new Error('not expected')) })
  return { node, pingStreams: () => streams }
}

describe('liveness', () => {
  it('pings a live peer with Yamux PING frames, keeps the connection and records its round trip', async () => {
    const a = await watcher({ intervalMs: 300, timeoutMs: 2_000, tickMs: 25 })
    const b = await peer()
    const conn = await a.node.dial(b.node.getMultiaddrs())
    await eventually(() => a.pings.length >= 3, 'three pings answered', 5_000)
    assert.ok(a.pings.every((p) => p.error === undefined && typeof p.rttMs === 'number' && p.rttMs >= 0), JSON.stringify(a.pings))
    assert.ok(a.pings.every((p) => p.connectionId === conn.id && p.peer.equals(b.node.peerId)))
    assert.equal(conn.status, 'open')
    assert.equal(typeof conn.rtt, 'number')
    assert.equal(a.node.services.liveness.size, 1)
    // The muxer answered: no ping stream (multistream-select, 32 bytes each way) was opened.
    assert.equal(b.pingStreams(), 0)
  })

  it('aborts the connection to a peer whose process hangs (SIGSTOP)', async () => {
    const a = await watcher({ intervalMs: 300, timeoutMs: 800, tickMs: 25 })
    const hung = await cluster.start({ label: 'hung' })
    const conn = await a.node.dial(multiaddr(hung.ready.addrs[0]))
    // Alive while it runs.
    await eventually(() => a.pings.some((p) => p.rttMs !== undefined), 'a ping answered by the running process', 5_000)
    hung.signal('SIGSTOP')
    try {
      const frozenAt = Date.now()
      await eventually(() => conn.status !== 'open', 'the connection to the frozen process ended', 5_000)
      assert.equal(conn.status, 'aborted')
      const failed = a.pings.filter((p) => p.error !== undefined)
      assert.equal(failed.length, 1)
      assert.equal(failed[0]?.error?.name, 'PingTimeoutError')
      // Its next ping comes within an interval (+25%), and is given timeoutMs.
      const tookMs = Date.now() - frozenAt
      assert.ok(tookMs < 375 + 800 + 1_000, `closed after ${tookMs} ms`)
      assert.equal(a.node.getConnections(conn.remotePeer).length, 0)
      await eventually(() => a.node.services.liveness.size === 0, 'the closed connection forgotten', 2_000)
    } finally {
      hung.signal('SIGCONT')
    }
  })

  it('spreads the pings of connections opened together over the interval', async () => {
    const intervalMs = 1_000
    const a = await watcher({ intervalMs, timeoutMs: 2_000, tickMs: 25 })
    const peers = await Promise.all(Array.from({ length: 10 }, async () => await peer()))
    const conns = await Promise.all(peers.map(async (p) => await a.node.dial(p.node.getMultiaddrs())))
    await eventually(() => conns.every((c) => a.pings.some((p) => p.connectionId === c.id)), 'every connection pinged once', 5_000)
    const first = conns.map((c) => a.pings.find((p) => p.connectionId === c.id)?.at as number)
    // libp2p's own monitor pings them all in one tick. With random phases, ten first pings
    // falling within a fifth of the interval has a probability of about 4 in a million.
    const spread = Math.max(...first) - Math.min(...first)
    assert.ok(spread > intervalMs / 5, `first pings at ${first.map((t) => t - Math.min(...first)).sort((x, y) => x - y).join(', ')} ms: spread ${spread} ms`)
  })

  it('does not ping a connection the peer keeps sending on, and pings it again once it goes quiet', async () => {
    const intervalMs = 300
    const a = await watcher({ intervalMs, timeoutMs: 2_000, tickMs: 25 })
    const b = await peer()
    const conn = await a.node.dial(b.node.getMultiaddrs())
    // b writes to a every 50 ms: Yamux PING frames from b's side of the connection.
    await eventually(() => b.node.getConnections(a.node.peerId).length > 0, 'b has its end of the connection', 5_000)
    const [bConn] = b.node.getConnections(a.node.peerId)
    const bMuxer = (bConn as unknown as { muxer?: { ping?: () => Promise<number> } } | undefined)?.muxer
    assert.equal(typeof bMuxer?.ping, 'function', 'b\'s connection runs Yamux')
    let talking = true
    const talk = (async () => {
      while (talking) {
        await bMuxer?.ping?.()
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    })()
    // Six intervals: a would have pinged about six times on schedule.
    await new Promise((resolve) => setTimeout(resolve, intervalMs * 6))
    talking = false
    await talk
    assert.equal(a.pings.length, 0, `a pinged a connection b was sending on: ${JSON.stringify(a.pings.map((p) => p.at))}`)
    // Quiet now: a looks at most an interval (+25%) later, and pings.
    await eventually(() => a.pings.length >= 2, 'a pings the quiet connection again', intervalMs * 8)
    assert.ok(a.pings.every((p) => p.error === undefined && p.connectionId === conn.id))
    assert.equal(conn.status, 'open')
  })
})
