import '../../core/polyfill.js'
import { afterEach, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { randomBytes } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Stream } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { byteStream } from '@libp2p/utils'
import { createLibp2p, type Libp2p } from 'libp2p'
import { singleWriteFrames } from '../../core/net/noise-frames.js'
import { lazyYamuxWindowUpdates } from '../../core/net/yamux-window.js'

// singleWriteFrames (core/net/noise-frames.ts) on real libp2p nodes over TCP on 127.0.0.1
// (Noise, Yamux). Socket writes are counted by wrapping net.Socket.prototype.write in this
// process, around the real write. Yamux window updates are lazy, as createNode makes them.

lazyYamuxWindowUpdates()

const nodes: Libp2p[] = []
afterEach(async () => {
  await Promise.allSettled(nodes.splice(0).map(async (n) => { await n.stop() }))
})

async function node (joined: boolean): Promise<Libp2p> {
  const n = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [joined ? singleWriteFrames(noise()) : noise()],
    streamMuxers: [yamux({ enableKeepAlive: false })],
    connectionMonitor: { enabled: false }
  })
  nodes.push(n)
  await n.handle('/test/echo/1.0.0', (stream: Stream) => {
    const bytes = byteStream(stream)
    void (async () => {
      for (;;) {
        const len = (await bytes.read({ bytes: 4 })).subarray()
        const n = Buffer.from(len).readUInt32BE(0)
        await bytes.write(Buffer.concat([len, (await bytes.read({ bytes: n })).subarray()]))
      }
    })().catch(() => {})
  })
  return n
}

/** Echo `sizes` messages one at a time from a to b; the socket writes made meanwhile and whether every echo matched. */
async function echo (a: Libp2p, b: Libp2p, sizes: number[]): Promise<{ writes: number, intact: boolean }> {
  const stream = await a.dialProtocol(b.getMultiaddrs(), '/test/echo/1.0.0')
  const bytes = byteStream(stream)
  // Let the stream's set-up frames go out before counting.
  await bytes.write(Buffer.from([0, 0, 0, 0]))
  await bytes.read({ bytes: 4 })
  const proto = net.Socket.prototype
  const own = Object.hasOwn(proto, 'write')
  const descriptor = Object.getOwnPropertyDescriptor(proto, 'write') ?? Object.getOwnPropertyDescriptor(Object.getPrototypeOf(proto), 'write')
  const original = descriptor?.value as (this: net.Socket, ...args: unknown[]) => boolean
  let writes = 0
  proto.write = function (this: net.Socket, ...args: unknown[]): boolean {
    writes++
    return original.apply(this, args)
  }
  let intact = true
  try {
    for (const size of sizes) {
      const body = randomBytes(size)
      const len = Buffer.alloc(4)
      len.writeUInt32BE(size)
      await bytes.write(Buffer.concat([len, body]))
      const back = (await bytes.read({ bytes: 4 + size })).subarray()
      intact &&= Buffer.from(back).equals(Buffer.concat([len, body]))
    }
  } finally {
    if (own) proto.write = original
    else Reflect.deleteProperty(proto, 'write')
  }
  await stream.close()
  return { writes, intact }
}

describe('singleWriteFrames', () => {
  it('writes each Noise frame to the socket once, not as a length and a body', async () => {
    const sizes = Array.from({ length: 50 }, () => 100)
    const plain = await echo(await node(false), await node(false), sizes)
    const joined = await echo(await node(true), await node(true), sizes)
    assert.ok(plain.intact && joined.intact)
    // 50 messages there and 50 back, each one Yamux data frame in one Noise frame (window
    // updates are lazy, see yamux-window.ts; these 10 KiB never reach half a window).
    assert.equal(plain.writes, 200, 'stock Noise: two writes per frame')
    assert.equal(joined.writes, 100, 'one write per frame')
  })

  it('carries messages larger than a Noise frame intact', async () => {
    const result = await echo(await node(true), await node(true), [70_000, 200_000, 1, 65_519, 65_520])
    assert.ok(result.intact)
  })
})
