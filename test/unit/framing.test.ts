import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Uint8ArrayList } from 'uint8arraylist'
import { encodeFrames, FrameDecoder } from '../../core/protocols/framing.js'
import { Rng } from '../helpers/prng.js'

const MAX = 64 * 1024

function frameOf (length: number, seed: number): Uint8Array {
  return new Rng(seed).bytes(length)
}

function decodeAll (dec: FrameDecoder, chunks: ReadonlyArray<Uint8Array | Uint8ArrayList>): Uint8Array[] {
  const out: Uint8Array[] = []
  for (const chunk of chunks) {
    for (const frame of dec.push(chunk)) out.push(frame.slice()) // copy: the decoder may reuse its buffer
  }
  dec.end()
  return out
}

function assertFramesEqual (actual: readonly Uint8Array[], expected: readonly Uint8Array[]): void {
  assert.equal(actual.length, expected.length, 'frame count')
  actual.forEach((f, i) => {
    assert.deepEqual(Buffer.from(f), Buffer.from(expected[i] as Uint8Array), `frame ${i}`)
  })
}

function assertThrowsNamed (fn: () => unknown, name: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof Error, 'an Error is thrown')
    assert.equal(err.name, name)
    return true
  })
}

/** Push a chunk and drain the generator (push does nothing until iterated). */
function pushAll (dec: FrameDecoder, chunk: Uint8Array): Uint8Array[] {
  return [...dec.push(chunk)]
}

describe('encodeFrames', () => {
  it('writes unsigned varint length prefixes', () => {
    assert.deepEqual([...encodeFrames([])], [])
    assert.deepEqual([...encodeFrames([new Uint8Array(0)])], [0])
    assert.deepEqual([...encodeFrames([new Uint8Array([7])])], [1, 7])
    assert.deepEqual([...encodeFrames([new Uint8Array(127)]).subarray(0, 1)], [0x7f])
    assert.deepEqual([...encodeFrames([new Uint8Array(128)]).subarray(0, 2)], [0x80, 0x01])
    assert.deepEqual([...encodeFrames([new Uint8Array(300)]).subarray(0, 2)], [0xac, 0x02])
    assert.deepEqual([...encodeFrames([new Uint8Array(16384)]).subarray(0, 3)], [0x80, 0x80, 0x01])
    assert.equal(encodeFrames([new Uint8Array(300), new Uint8Array(1)]).byteLength, 2 + 300 + 1 + 1)
  })
})

describe('FrameDecoder', () => {
  const frames = [
    frameOf(0, 1), frameOf(1, 2), frameOf(5, 3), frameOf(0, 4), frameOf(127, 5), frameOf(128, 6), frameOf(300, 7), frameOf(16384, 8), frameOf(2, 9)
  ]
  const encoded = encodeFrames(frames)

  it('round-trips frames pushed in one chunk', () => {
    assertFramesEqual(decodeAll(new FrameDecoder(MAX), [encoded]), frames)
  })

  it('round-trips frames split in two at every byte boundary', () => {
    for (let i = 0; i <= encoded.byteLength; i++) {
      const dec = new FrameDecoder(MAX)
      const got = decodeAll(dec, [encoded.subarray(0, i), encoded.subarray(i)])
      assertFramesEqual(got, frames)
      assert.equal(dec.buffered, 0)
    }
  })

  it('round-trips small frames pushed one byte at a time', () => {
    const small = [frameOf(0, 10), frameOf(3, 11), frameOf(0, 12), frameOf(200, 13), frameOf(1, 14)]
    const bytes = encodeFrames(small)
    const dec = new FrameDecoder(MAX)
    const got: Uint8Array[] = []
    for (let i = 0; i < bytes.byteLength; i++) {
      for (const f of dec.push(bytes.subarray(i, i + 1))) got.push(f.slice())
    }
    dec.end()
    assertFramesEqual(got, small)
  })

  it('round-trips random chunkings, including Uint8ArrayList chunks', () => {
    const rng = new Rng(2024)
    for (let round = 0; round < 200; round++) {
      const sent = Array.from({ length: 1 + rng.int(12) }, () => rng.bytes(rng.int(4) === 0 ? 0 : rng.int(600)))
      const bytes = encodeFrames(sent)
      const chunks: Array<Uint8Array | Uint8ArrayList> = []
      for (let i = 0; i < bytes.byteLength;) {
        const n = 1 + rng.int(64)
        const piece = bytes.subarray(i, i + n)
        chunks.push(rng.int(2) === 0 ? piece : new Uint8ArrayList(piece.subarray(0, 1), piece.subarray(1)))
        i += n
      }
      assertFramesEqual(decodeAll(new FrameDecoder(MAX), chunks), sent)
    }
  })

  it('yields zero-length frames, alone and back to back', () => {
    const dec = new FrameDecoder(MAX)
    const got = pushAll(dec, new Uint8Array([0, 0, 0]))
    assert.equal(got.length, 3)
    for (const f of got) assert.equal(f.byteLength, 0)
    assert.equal(dec.buffered, 0)
    dec.end()
    assertFramesEqual(decodeAll(new FrameDecoder(0), [encodeFrames([new Uint8Array(0), new Uint8Array(0)])]), [new Uint8Array(0), new Uint8Array(0)])
  })

  it('accepts a frame of exactly the limit', () => {
    const frame = frameOf(1000, 15)
    assertFramesEqual(decodeAll(new FrameDecoder(1000), [encodeFrames([frame])]), [frame])
    assertThrowsNamed(() => pushAll(new FrameDecoder(999), encodeFrames([frame])), 'FrameTooLargeError')
  })

  it('rejects a prefix claiming 4 GiB with FrameTooLargeError before any payload arrives', () => {
    const fourGiB = new Uint8Array([0x80, 0x80, 0x80, 0x80, 0x10]) // 2^32
    const almost = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f]) // 2^32 - 1
    for (const prefix of [fourGiB, almost]) {
      const dec = new FrameDecoder(MAX)
      // All but the last prefix byte: nothing to decide yet.
      assert.deepEqual(pushAll(dec, prefix.subarray(0, 4)), [])
      // The last prefix byte alone is enough to refuse: no payload byte has been sent.
      assertThrowsNamed(() => pushAll(dec, prefix.subarray(4)), 'FrameTooLargeError')
      assert.ok(dec.buffered <= prefix.byteLength, 'nothing beyond the prefix was buffered')
    }
    // Same when the payload's first bytes come in the same chunk: it is refused, not buffered.
    const dec = new FrameDecoder(MAX)
    const chunk = new Uint8Array(5 + 1024)
    chunk.set(fourGiB)
    assertThrowsNamed(() => pushAll(dec, chunk), 'FrameTooLargeError')
  })

  it('rejects a limit-plus-one prefix after valid frames in the same chunk', () => {
    const dec = new FrameDecoder(100)
    const ok = encodeFrames([frameOf(100, 16)])
    const bad = encodeFrames([frameOf(101, 17)]).subarray(0, 1)
    const chunk = new Uint8Array([...ok, ...bad])
    const gen = dec.push(chunk)
    const first = gen.next()
    assert.equal(first.done, false)
    assert.equal(first.value?.byteLength, 100)
    assertThrowsNamed(() => gen.next(), 'FrameTooLargeError')
  })

  it('rejects an over-long varint with InvalidLengthPrefixError', () => {
    // Six bytes: five continuation bytes already exceed what any allowed length needs.
    assertThrowsNamed(() => pushAll(new FrameDecoder(MAX), new Uint8Array([0x80, 0x80, 0x80, 0x80, 0x80, 0x00])), 'InvalidLengthPrefixError')
    // Detected as soon as the fifth continuation byte arrives, one byte at a time.
    const dec = new FrameDecoder(MAX)
    for (let i = 0; i < 4; i++) assert.deepEqual(pushAll(dec, new Uint8Array([0xff])), [])
    assertThrowsNamed(() => pushAll(dec, new Uint8Array([0xff])), 'InvalidLengthPrefixError')
  })

  it('end() after a partial frame throws TruncatedFrameError', () => {
    const bytes = encodeFrames([frameOf(10, 18), frameOf(300, 19)])
    // Cut inside the second prefix, right after it, and inside the second payload.
    for (const cut of [12, 13, 14, 20, bytes.byteLength - 1]) {
      const dec = new FrameDecoder(MAX)
      const got = pushAll(dec, bytes.subarray(0, cut))
      assert.equal(got.length, 1)
      assertThrowsNamed(() => { dec.end() }, 'TruncatedFrameError')
    }
    const inPrefix = new FrameDecoder(MAX)
    pushAll(inPrefix, new Uint8Array([0x80]))
    assertThrowsNamed(() => { inPrefix.end() }, 'TruncatedFrameError')

    const whole = new FrameDecoder(MAX)
    assert.equal(pushAll(whole, bytes).length, 2)
    whole.end() // nothing left over: fine
    new FrameDecoder(MAX).end() // empty stream: fine
  })
})
