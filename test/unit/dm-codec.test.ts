import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ulidFactory, type MessageId } from '../../core/ids.js'
import { MAX_RECEIPT_IDS, readAck, readEnvelope, textByteLength, writeAck, writeEnvelope, type DmEnvelope, type ProfileData } from '../../core/protocols/dm/codec.js'
import { MAX_ACK_IDS, MAX_ENVELOPE_BYTES, MAX_GROUP_BODY_BYTES, MAX_PROFILE_BODY_BYTES, MAX_SEALED_BYTES, MAX_TEXT_BYTES } from '../../core/protocols/dm/constants.js'
import { MAX_MAILBOX_ENVELOPE_BYTES } from '../../core/protocols/mailbox/constants.js'
import { Envelope, EnvelopeType, ProfileBody, ReceiptBody, TextBody } from '../../core/protocols/dm/pb/dm.js'
import { MAX_AVATAR_BYTES } from '../../core/profile.js'
import { jpegHeader, png, webpHeader } from '../helpers/images.js'
import { Rng } from '../helpers/prng.js'

const nextId = ulidFactory(() => 1_700_000_000_000)
const ENVELOPE_ERRORS = new Set(['MalformedFrameError', 'InvalidEnvelopeError'])

function envelope (overrides: Partial<DmEnvelope> = {}): DmEnvelope {
  return { id: nextId(), lamport: 7, sentAt: 1_700_000_000_123, type: 'text', text: 'hello, world', ...overrides }
}

function assertThrowsNamed (fn: () => unknown, name: string, why?: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof Error, 'an Error is thrown')
    assert.equal(err.name, name, `${why ?? ''} ${err.message}`)
    return true
  }, why)
}

function varint (value: bigint): number[] {
  const out: number[] = []
  let v = value
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80)
    v >>= 7n
  }
  out.push(Number(v))
  return out
}

/** Whatever readEnvelope returns must satisfy the rules it enforces. */
function assertValidEnvelope (env: DmEnvelope): void {
  assert.match(env.id, /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/)
  assert.ok(Number.isSafeInteger(env.lamport) && env.lamport >= 1)
  assert.ok(Number.isSafeInteger(env.sentAt) && env.sentAt >= 0)
  assert.equal(env.type, 'text')
  assert.equal(typeof env.text, 'string')
}

/** Run readEnvelope on hostile bytes: it may succeed or throw, but only its named errors. */
function tryEnvelope (frame: Uint8Array): string {
  try {
    assertValidEnvelope(readEnvelope(frame))
    return 'ok'
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err
    const name = err instanceof Error ? err.name : typeof err
    if (!ENVELOPE_ERRORS.has(name)) {
      assert.fail(`readEnvelope threw ${name} (${String(err)}) for ${Buffer.from(frame).toString('hex')}`)
    }
    return name
  }
}

describe('envelope codec', () => {
  it('round-trips envelopes', () => {
    const cases = [
      envelope(),
      envelope({ text: '' }),
      envelope({ text: 'Zoë 🦜 — 日本語\n\ttabs\u0000nul' }),
      envelope({ lamport: 1, sentAt: 0 }),
      envelope({ lamport: Number.MAX_SAFE_INTEGER, sentAt: Number.MAX_SAFE_INTEGER }),
      envelope({ text: 'x'.repeat(MAX_TEXT_BYTES) })
    ]
    for (const env of cases) {
      const frame = writeEnvelope(env)
      assert.ok(frame.byteLength <= MAX_ENVELOPE_BYTES, 'every valid envelope fits the frame bound')
      assert.deepEqual(readEnvelope(frame), env)
    }
  })

  it('accepts text of exactly MAX_TEXT_BYTES UTF-8 bytes, including multi-byte text', () => {
    const ascii = 'a'.repeat(MAX_TEXT_BYTES)
    const twoByte = 'é'.repeat(MAX_TEXT_BYTES / 2)
    const fourByte = '🦜'.repeat(MAX_TEXT_BYTES / 4)
    for (const text of [ascii, twoByte, fourByte]) {
      assert.equal(textByteLength(text), MAX_TEXT_BYTES)
      assert.equal(readEnvelope(writeEnvelope(envelope({ text }))).text, text)
    }
  })

  function assertTextRejected (cases: ReadonlyArray<[string, string]>): void {
    for (const [text, why] of cases) {
      assert.ok(textByteLength(text) > MAX_TEXT_BYTES)
      assertThrowsNamed(() => readEnvelope(writeEnvelope(envelope({ text }))), 'InvalidEnvelopeError', why)
    }
  }

  it('rejects text far over MAX_TEXT_BYTES with InvalidEnvelopeError', () => {
    assertTextRejected([
      ['a'.repeat(MAX_TEXT_BYTES + 100), 'a hundred bytes over'],
      ['é'.repeat(MAX_TEXT_BYTES), 'twice the limit in two-byte characters'],
      ['a'.repeat(4 * MAX_TEXT_BYTES), 'four times the limit']
    ])
  })

  it('rejects text just over MAX_TEXT_BYTES (1 to 12 bytes over) with InvalidEnvelopeError', () => {
    // The sender refuses anything over MAX_TEXT_BYTES (MessageTooLargeError); the receiver
    // must hold the same line, not the limit plus protobuf slack.
    assertTextRejected([
      ['a'.repeat(MAX_TEXT_BYTES + 1), 'one byte over'],
      ['é'.repeat(MAX_TEXT_BYTES / 2 + 1), 'one two-byte character over'],
      ['🦜'.repeat(MAX_TEXT_BYTES / 4 + 1), 'one four-byte character over'],
      ['a'.repeat(MAX_TEXT_BYTES + 12), 'twelve bytes over']
    ])
  })

  it('rejects a missing or non-ULID id', () => {
    for (const id of ['', 'not-a-ulid', '01arz3ndektsv4rrffq69g5fav', '01ARZ3NDEKTSV4RRFFQ69G5FAVX']) {
      assertThrowsNamed(() => readEnvelope(writeEnvelope(envelope({ id: id as MessageId }))), 'InvalidEnvelopeError', `id ${JSON.stringify(id)}`)
    }
  })

  it('rejects lamport 0 (absent)', () => {
    assertThrowsNamed(() => readEnvelope(writeEnvelope(envelope({ lamport: 0 }))), 'InvalidEnvelopeError')
  })

  it('rejects a lamport or sentAt beyond the safe integer range', () => {
    // Hand-built: the encoder itself refuses such numbers. Field 2 is lamport, 3 is sentAt.
    const valid = writeEnvelope(envelope())
    for (const tag of [0x10, 0x18]) {
      for (const value of [2n ** 53n, 2n ** 60n, 2n ** 64n - 1n]) {
        const frame = new Uint8Array([...valid, tag, ...varint(value)]) // last field occurrence wins
        const outcome = tryEnvelope(frame)
        assert.ok(ENVELOPE_ERRORS.has(outcome), `field tag ${tag} = ${value}: ${outcome}`)
      }
    }
  })

  it('rejects an unspecified or unknown type', () => {
    const unspecified = Envelope.encode({ id: nextId(), lamport: 1, sentAt: 1, type: EnvelopeType.ENVELOPE_TYPE_UNSPECIFIED, body: TextBody.encode({ text: 'x' }) })
    assertThrowsNamed(() => readEnvelope(unspecified), 'InvalidEnvelopeError')
    // Field 4 (type) as varint 9: a type this version does not know.
    const known = writeEnvelope(envelope())
    const unknownType = new Uint8Array([...known, 0x20, 0x09])
    assert.ok(ENVELOPE_ERRORS.has(tryEnvelope(unknownType)))
    assert.notEqual(tryEnvelope(unknownType), 'ok')
  })

  it('round-trips receipts and retry requests and rejects empty, oversized or malformed ones', () => {
    const ids = [nextId(), nextId(), nextId()]
    const receipt: DmEnvelope = { id: nextId(), lamport: 3, sentAt: 1700000000000, type: 'receipt', text: '', refs: ids }
    assert.deepEqual(readEnvelope(writeEnvelope(receipt)), receipt)
    const retry: DmEnvelope = { ...receipt, id: nextId(), type: 'retry' }
    assert.deepEqual(readEnvelope(writeEnvelope(retry)), retry)
    assertThrowsNamed(() => readEnvelope(writeEnvelope({ ...receipt, refs: [] })), 'InvalidEnvelopeError')
    assertThrowsNamed(() => readEnvelope(writeEnvelope({ ...retry, refs: [] })), 'InvalidEnvelopeError')
    const bad = Envelope.encode({ id: nextId(), lamport: 1, sentAt: 1, type: EnvelopeType.RECEIPT, body: ReceiptBody.encode({ ids: ['not-a-ulid'] }) })
    assertThrowsNamed(() => readEnvelope(bad), 'InvalidEnvelopeError')
    const tooMany = Envelope.encode({ id: nextId(), lamport: 1, sentAt: 1, type: EnvelopeType.RECEIPT, body: ReceiptBody.encode({ ids: Array.from({ length: MAX_RECEIPT_IDS + 1 }, () => nextId()) }) })
    assertThrowsNamed(() => readEnvelope(tooMany), 'MalformedFrameError')
  })

  it('round-trips group payloads as opaque bytes and rejects empty or oversized ones', () => {
    const body = new Uint8Array([8, 1, 18, 3, 0x61, 0x62, 0x63])
    const group: DmEnvelope = { id: nextId(), lamport: 4, sentAt: 1700000000000, type: 'group', text: '', body }
    const back = readEnvelope(writeEnvelope(group))
    assert.equal(back.type, 'group')
    assert.deepEqual(new Uint8Array(back.body ?? []), body)
    assertThrowsNamed(() => readEnvelope(writeEnvelope({ ...group, body: new Uint8Array(0) })), 'InvalidEnvelopeError')
    const big = Envelope.encode({ id: nextId(), lamport: 1, sentAt: 1, type: EnvelopeType.GROUP, body: new Uint8Array(MAX_GROUP_BODY_BYTES + 1) })
    assertThrowsNamed(() => readEnvelope(big), 'InvalidEnvelopeError')
    const max = Envelope.encode({ id: nextId(), lamport: 1, sentAt: 1, type: EnvelopeType.GROUP, body: new Uint8Array(MAX_GROUP_BODY_BYTES) })
    assert.ok(max.byteLength <= MAX_ENVELOPE_BYTES, 'the largest group envelope fits the envelope limit')
    assert.equal(readEnvelope(max).body?.byteLength, MAX_GROUP_BODY_BYTES)
  })

  describe('profile envelopes', () => {
    const profileEnvelope = (profile: ProfileData): DmEnvelope => ({ id: nextId(), lamport: 5, sentAt: 1700000000000, type: 'profile', text: '', profile })
    const raw = (body: Partial<ProfileBody>): Uint8Array => Envelope.encode({
      id: nextId(), lamport: 1, sentAt: 1, type: EnvelopeType.PROFILE,
      body: ProfileBody.encode({ version: 1, name: 'Ada', avatar: new Uint8Array(0), request: false, ...body })
    })
    /** A real PNG of exactly `size` bytes (noise does not compress; an ancillary chunk pads). */
    const pngOf = (size: number): Uint8Array<ArrayBuffer> => {
      let seed = 1
      const base = png(100, 100, undefined, () => { seed = (seed * 16807) % 2147483647; return seed / 2147483647 })
      assert.ok(base.byteLength < size - 12, `base PNG ${base.byteLength} bytes`)
      const pad = Buffer.alloc(size - base.byteLength - 12)
      const chunk = Buffer.alloc(8)
      chunk.writeUInt32BE(pad.byteLength, 0)
      chunk.write('tEXt', 4, 'latin1')
      // CRC is not checked by the sniffer; what matters is the header and the size.
      return new Uint8Array(Buffer.concat([base.subarray(0, 33), chunk, pad, Buffer.alloc(4), base.subarray(33)]))
    }

    it('round-trips name, avatar (PNG, JPEG, WebP), no avatar, and the request flag', () => {
      for (const avatar of [new Uint8Array(png(16, 16)), new Uint8Array(jpegHeader(128, 128)), new Uint8Array(webpHeader(128, 96)), undefined]) {
        for (const request of [false, true]) {
          const env = profileEnvelope({ version: 1_700_000_000_000, name: 'Ada Lovelace', ...(avatar !== undefined ? { avatar } : {}), request })
          const back = readEnvelope(writeEnvelope(env))
          assert.equal(back.type, 'profile')
          assert.equal(back.profile?.version, 1_700_000_000_000)
          assert.equal(back.profile?.name, 'Ada Lovelace')
          assert.equal(back.profile?.request, request)
          assert.deepEqual(back.profile?.avatar === undefined ? undefined : new Uint8Array(back.profile.avatar), avatar)
        }
      }
      const nameless = readEnvelope(writeEnvelope(profileEnvelope({ version: 2, name: '', request: false })))
      assert.equal(nameless.profile?.name, '', 'no name set is allowed')
    })

    it('the largest profile fits a DM envelope, a sealed frame and a relay mailbox item', () => {
      const avatar = pngOf(MAX_AVATAR_BYTES)
      assert.equal(avatar.byteLength, MAX_AVATAR_BYTES)
      const frame = writeEnvelope(profileEnvelope({ version: Number.MAX_SAFE_INTEGER, name: '🦜'.repeat(32), avatar, request: true }))
      assert.ok(frame.byteLength <= MAX_ENVELOPE_BYTES, `${frame.byteLength} bytes`)
      assert.ok(frame.byteLength + 4096 <= MAX_SEALED_BYTES && MAX_SEALED_BYTES <= MAX_MAILBOX_ENVELOPE_BYTES)
      assert.ok(frame.byteLength < 128 * 1024 / 2, 'well under the relayed-connection limit')
      assert.equal(readEnvelope(frame).profile?.avatar?.byteLength, MAX_AVATAR_BYTES)
    })

    it('rejects junk: version 0, untrimmed or long names, avatars that are not images, too large or too many pixels', () => {
      assertThrowsNamed(() => readEnvelope(raw({ version: 0 })), 'InvalidEnvelopeError', 'version 0')
      assertThrowsNamed(() => readEnvelope(raw({ name: ' Ada' })), 'InvalidEnvelopeError', 'untrimmed')
      assertThrowsNamed(() => readEnvelope(raw({ name: 'x'.repeat(65) })), 'InvalidEnvelopeError', '65 characters')
      assertThrowsNamed(() => readEnvelope(raw({ avatar: new TextEncoder().encode('hello, this is a text file\n') })), 'InvalidEnvelopeError', 'text')
      assertThrowsNamed(() => readEnvelope(raw({ avatar: new Uint8Array(png(16, 16)).subarray(0, 20) })), 'InvalidEnvelopeError', 'cut PNG header')
      assertThrowsNamed(() => readEnvelope(raw({ avatar: new Uint8Array(png(2000, 1)) })), 'InvalidEnvelopeError', '2000 px wide')
      assertThrowsNamed(() => readEnvelope(raw({ avatar: new Uint8Array(jpegHeader(20000, 20000)) })), 'InvalidEnvelopeError', 'JPEG bomb')
      assertThrowsNamed(() => readEnvelope(raw({ avatar: new Uint8Array(webpHeader(4000, 10)) })), 'InvalidEnvelopeError', 'WebP bomb')
      assertThrowsNamed(() => readEnvelope(raw({ avatar: pngOf(MAX_AVATAR_BYTES + 1) })), 'InvalidEnvelopeError', 'one byte over')
      const huge = Envelope.encode({ id: nextId(), lamport: 1, sentAt: 1, type: EnvelopeType.PROFILE, body: new Uint8Array(MAX_PROFILE_BODY_BYTES + 1) })
      assertThrowsNamed(() => readEnvelope(huge), 'InvalidEnvelopeError', 'body over the limit')
      const notProtobuf = Envelope.encode({ id: nextId(), lamport: 1, sentAt: 1, type: EnvelopeType.PROFILE, body: new Uint8Array([0x12, 0xff, 0xff, 0xff, 0x0f]) })
      assertThrowsNamed(() => readEnvelope(notProtobuf), 'MalformedFrameError')
    })
  })

  it('rejects a body that is not a TextBody with MalformedFrameError', () => {
    const frame = Envelope.encode({ id: nextId(), lamport: 1, sentAt: 1, type: EnvelopeType.TEXT, body: new Uint8Array([0x0a, 0x05, 0x61]) })
    assertThrowsNamed(() => readEnvelope(frame), 'MalformedFrameError')
  })

  it('rejects frames that are not protobuf with MalformedFrameError', () => {
    assertThrowsNamed(() => readEnvelope(new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])), 'MalformedFrameError')
    assertThrowsNamed(() => readEnvelope(new Uint8Array([0x0a])), 'MalformedFrameError')
  })

  it('10k random frames only ever throw MalformedFrameError or InvalidEnvelopeError', () => {
    const rng = new Rng(0xdecaf)
    const seen = new Map<string, number>()
    for (let i = 0; i < 10_000; i++) {
      const frame = rng.bytes(rng.int(4) === 0 ? rng.int(8) : rng.int(300))
      const outcome = tryEnvelope(frame)
      seen.set(outcome, (seen.get(outcome) ?? 0) + 1)
    }
    assert.ok((seen.get('MalformedFrameError') ?? 0) > 0, `outcomes: ${JSON.stringify([...seen])}`)
    assert.ok((seen.get('InvalidEnvelopeError') ?? 0) > 0, `outcomes: ${JSON.stringify([...seen])}`)
  })

  it('10k mutated valid frames only ever throw MalformedFrameError or InvalidEnvelopeError', () => {
    const rng = new Rng(0xbeef)
    const seen = new Map<string, number>()
    for (let i = 0; i < 10_000; i++) {
      const valid = writeEnvelope(envelope({ text: 'x'.repeat(rng.int(40)), lamport: 1 + rng.int(1000) }))
      let frame: Uint8Array
      switch (rng.int(4)) {
        case 0: { // flip a few bytes
          frame = valid.slice()
          for (let k = 1 + rng.int(3); k > 0; k--) frame[rng.int(frame.length)] = rng.int(256)
          break
        }
        case 1: // truncate
          frame = valid.subarray(0, rng.int(valid.length))
          break
        case 2: // append garbage
          frame = new Uint8Array([...valid, ...rng.bytes(1 + rng.int(20))])
          break
        default: { // splice garbage into the middle
          const at = rng.int(valid.length)
          frame = new Uint8Array([...valid.subarray(0, at), ...rng.bytes(1 + rng.int(6)), ...valid.subarray(at)])
        }
      }
      const outcome = tryEnvelope(frame)
      seen.set(outcome, (seen.get(outcome) ?? 0) + 1)
    }
    assert.ok((seen.get('ok') ?? 0) > 0, `outcomes: ${JSON.stringify([...seen])}`)
  })
})

describe('ack codec', () => {
  it('round-trips ack ids in order', () => {
    const ids = Array.from({ length: 100 }, () => nextId())
    assert.deepEqual(readAck(writeAck(ids)).ids, ids)
    assert.deepEqual(readAck(writeAck([])), { ids: [], rejected: [] })
    assert.deepEqual(readAck(new Uint8Array(0)), { ids: [], rejected: [] })
  })

  it('round-trips rejections next to acked ids', () => {
    const ids = [nextId(), nextId()]
    const rejected = [{ id: nextId(), error: 'DecryptionError' }, { id: nextId(), error: 'NoSessionError' }]
    assert.deepEqual(readAck(writeAck(ids, rejected)), { ids, rejected })
    assertThrowsNamed(() => readAck(writeAck([], [{ id: 'nope' as MessageId, error: 'X' }])), 'MalformedFrameError')
    assertThrowsNamed(() => readAck(writeAck([], [{ id: nextId(), error: '' }])), 'MalformedFrameError')
  })

  it('round-trips the maximum number of ids', () => {
    const ids = Array.from({ length: MAX_ACK_IDS }, () => nextId())
    assert.deepEqual(readAck(writeAck(ids)).ids, ids)
  })

  it('rejects ids that are not ULIDs with MalformedFrameError', () => {
    for (const bad of ['', 'nope', '01arz3ndektsv4rrffq69g5fav', '81ARZ3NDEKTSV4RRFFQ69G5FAV', '01ARZ3NDEKTSV4RRFFQ69G5FA']) {
      assertThrowsNamed(() => readAck(writeAck([nextId(), bad as MessageId, nextId()])), 'MalformedFrameError', JSON.stringify(bad))
    }
  })

  it('rejects more than MAX_ACK_IDS ids with MalformedFrameError', () => {
    const ids = Array.from({ length: MAX_ACK_IDS + 1 }, () => nextId())
    assertThrowsNamed(() => readAck(writeAck(ids)), 'MalformedFrameError')
  })

  it('random frames only ever throw MalformedFrameError', () => {
    const rng = new Rng(0xac1)
    for (let i = 0; i < 5000; i++) {
      const frame = rng.bytes(rng.int(200))
      try {
        const { ids, rejected } = readAck(frame)
        for (const id of [...ids, ...rejected.map((r) => r.id)]) assert.match(id, /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/)
      } catch (err) {
        if (err instanceof assert.AssertionError) throw err
        assert.equal(err instanceof Error ? err.name : typeof err, 'MalformedFrameError', Buffer.from(frame).toString('hex'))
      }
    }
  })
})
