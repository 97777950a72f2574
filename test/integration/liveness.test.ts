import '../../core/polyfill.js'
import { afterEach, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Stream } from '@libp2p/interface'
import { PING_PROTOCOL } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { byteStream } from '@libp2p/utils'
import { createLibp2p, type Libp2p } from 'libp2p'
import { liveness, type Liveness, type LivenessInit } from '../../core/net/liveness.js'
import { eventually } from '../helpers/messengers.js'

// Liveness (core/net/liveness.ts) on real libp2p nodes over TCP on 127.0.0.1 (Noise, Yamux).
// The watching node runs it with short intervals; its peers answer pings with handlers the
// test controls (echo, never answer, or no ping protocol at all), so what liveness does with
// each kind of peer is seen on the real connection.

const nodes: Libp2p[] = []
afterEach(async () => {
  await Promise.allSettled(nodes.splice(0).map(async (n) => { await n.stop() }))
})

async function watcher (init: LivenessInit): Promise<Libp2p<{ liveness: Liveness }>> {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionMonitor: { enabled: false },
    services: { liveness: liveness(init) }
  })
  nodes.push(node)
  return node
}

type Answer = 'echo' | 'silent' | 'none'

/** A peer whose ping handler echoes, reads and never answers, or is not there; pings noted with their arrival time. */
async function peer (answer: Answer): Promise<{ node: Libp2p, pings: number[] }> {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionMonitor: { enabled: false }
  })
  nodes.push(node)
  const pings: number[] = []
  if (answer !== 'none') {
    await node.handle(PING_PROTOCOL, (stream: Stream) => {
      pings.push(Date.now())
      const bytes = byteStream(stream)
      void (async () => {
        const got = await bytes.read({ bytes: 32 })
        if (answer === 'echo') await bytes.write(got.subarray())
      })().catch(() => {})
    })
  }
  return { node, pings }
}

describe('liveness', () => {
  it('pings a live peer, keeps the connection and records its round trip', async () => {
    const a = await watcher({ intervalMs: 300, timeoutMs: 2_000, tickMs: 25 })
    const b = await peer('echo')
    const conn = await a.dial(b.node.getMultiaddrs())
    await eventually(() => b.pings.length >= 3, 'three pings answered', 5_000)
    assert.equal(conn.status, 'open')
    assert.equal(typeof conn.rtt, 'number')
    assert.ok((conn.rtt ?? -1) >= 0)
    assert.equal(a.services.liveness.size, 1)
  })

  it('aborts the connection to a peer that stops answering', async () => {
    const a = await watcher({ intervalMs: 300, timeoutMs: 500, tickMs: 25 })
    const b = await peer('silent')
    const conn = await a.dial(b.node.getMultiaddrs())
    const openedAt = Date.now()
    await eventually(() => conn.status !== 'open', 'the unanswered connection ended', 5_000)
    assert.equal(conn.status, 'aborted')
    // Its first ping comes within one interval, and is given timeoutMs.
    assert.ok(b.pings.length >= 1, 'the peer was pinged')
    assert.ok(Date.now() - openedAt < 300 + 500 + 1_000, `closed after ${Date.now() - openedAt} ms`)
    assert.equal(a.getConnections(b.node.peerId).length, 0)
    await eventually(() => a.services.liveness.size === 0, 'the closed connection forgotten', 2_000)
  })

  it('keeps a peer that does not speak the ping protocol (it answered multistream-select)', async () => {
    const a = await watcher({ intervalMs: 200, timeoutMs: 500, tickMs: 25 })
    const b = await peer('none')
    const conn = await a.dial(b.node.getMultiaddrs())
    // Several rounds of pings, each refused as unsupported.
    await new Promise((resolve) => setTimeout(resolve, 1_500))
    assert.equal(conn.status, 'open')
    assert.equal(a.getConnections(b.node.peerId).length, 1)
  })

  it('spreads the pings of connections opened together over the interval', async () => {
    const intervalMs = 1_000
    const a = await watcher({ intervalMs, timeoutMs: 2_000, tickMs: 25 })
    const peers = await Promise.all(Array.from({ length: 10 }, async () => await peer('echo')))
    const start = Date.now()
    await Promise.all(peers.map(async (p) => await a.dial(p.node.getMultiaddrs())))
    await eventually(() => peers.every((p) => p.pings.length >= 1), 'every peer pinged once', 5_000)
    const first = peers.map((p) => (p.pings[0] as number) - start)
    // libp2p's own monitor pings them all in one tick. With random phases, ten first pings
    // falling within a fifth of the interval has a probability of about 4 in a million.
    const spread = Math.max(...first) - Math.min(...first)
    assert.ok(spread > intervalMs / 5, `first pings at ${first.sort((x, y) => x - y).join(', ')} ms: spread ${spread} ms`)
  })
})
