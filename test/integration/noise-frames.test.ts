import '../../core/polyfill.js'
import { afterEach, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { randomBytes } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Stream } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { byteStream, LengthPrefixedDecoder } from '@libp2p/utils'
import { createLibp2p, type Libp2p } from 'libp2p'
import { NOISE_MAX_FRAME, noiseFrameLength, quietFrameLengths, singleWriteFrames } from '../../core/net/noise-frames.js'
import { lazyYamuxWindowUpdates } from '../../core/net/yamux-window.js'

// singleWriteFrames and quietFrameLengths (core/net/noise-frames.ts) on real libp2p nodes over
// TCP on 127.0.0.1 (Noise, Yamux). Socket writes are counted by wrapping
// net.Socket.prototype.write in this process, around the real write; RangeErrors made by
// wrapping the global RangeError. Yamux window updates are lazy, as createNode makes them.

lazyYamuxWindowUpdates()

const nodes: Libp2p[] = []
afterEach(async () => {
  await Promise.allSettled(nodes.splice(0).map(async (n) => { await n.stop() }))
})

async function node (joined: boolean, quiet = false): Promise<Libp2p> {
  const joining = joined ? singleWriteFrames(noise()) : noise()
  const n = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [quiet ? quietFrameLengths(joining) : joining],
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

/** How many RangeErrors `fn` makes (the global RangeError wrapped meanwhile; `instanceof` still holds). */
async function rangeErrorsDuring (fn: () => Promise<void>): Promise<number> {
  const Original = globalThis.RangeError
  let made = 0
  const Counting = function (this: unknown, message?: string) {
    made++
    return new Original(message)
  } as unknown as RangeErrorConstructor
  Object.defineProperty(Counting, 'prototype', { value: Original.prototype })
  globalThis.RangeError = Counting
  try {
    await fn()
  } finally {
    globalThis.RangeError = Original
  }
  return made
}

describe('quietFrameLengths', () => {
  it('reads Noise frames without an exception per socket read, and carries every size intact', async () => {
    const run = async (quiet: boolean, messages: number): Promise<number> => await rangeErrorsDuring(async () => {
      const result = await echo(await node(true, quiet), await node(true, quiet), Array.from({ length: messages }, () => 100))
      assert.ok(result.intact)
    })
    const stock = [await run(false, 50), await run(false, 200)]
    const quiet = [await run(true, 50), await run(true, 200)]
    // Stock: one for each frame read, at either end (150 more frames each way: at least 300 more).
    assert.ok((stock[1] as number) - (stock[0] as number) >= 300, `stock Noise: ${stock.join(', ')}`)
    // Quiet: only the few that setting up a connection makes (handshake, protocol negotiation;
    // their number varies by a few with timing), however many frames follow.
    assert.ok(quiet.every((n) => n < 20), `quiet: ${quiet.join(', ')}`)
    assert.ok(Math.abs((quiet[1] as number) - (quiet[0] as number)) <= 5, `quiet: ${quiet.join(', ')}`)
    const big = await echo(await node(true, true), await node(true, true), [70_000, 200_000, 1, 65_519, 65_520])
    assert.ok(big.intact)
  })

  it('decodes frames split anywhere, even inside the 2-byte length, like the stock decoder', () => {
    const frames = [1, 2, 300, 65_535, 0, 7].map((n) => randomBytes(n))
    const wire = Buffer.concat(frames.flatMap((f) => [Buffer.from([f.length >> 8, f.length & 0xff]), f]))
    for (const step of [1, 2, 3, 1000, wire.length]) {
      const decoder = new LengthPrefixedDecoder({ lengthDecoder: noiseFrameLength, encodingLength: () => 2, maxBufferSize: 16 * 1024 * 1024 })
      const out: Buffer[] = []
      for (let i = 0; i < wire.length; i += step) {
        for (const f of decoder.decode(wire.subarray(i, i + step))) out.push(Buffer.from(f.subarray()))
      }
      // The decoder yields no empty frames (Noise never sends one: every frame has a tag).
      assert.deepEqual(out, frames.filter((f) => f.length > 0), `chunks of ${step}`)
    }
    assert.equal(noiseFrameLength(new Uint8Array([1])), NOISE_MAX_FRAME)
    assert.equal(noiseFrameLength(new Uint8Array([1, 2, 3])), 258)
  })
})
