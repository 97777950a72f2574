import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { newGroupId } from '../../core/ids.js'
import { encodeFrames, FrameDecoder } from '../../core/protocols/framing.js'
import {
  chunkRecords, decodeSyncMessage, encodeSyncMessage, isSendableRecord, refusalError, type SyncMessage
} from '../../core/protocols/group-sync/codec.js'
import {
  MAX_CHUNK_BYTES, MAX_CHUNK_RECORDS, MAX_RECORD_BYTES, MAX_STATE_VECTOR_BYTES, MAX_SYNC_FRAME_BYTES
} from '../../core/protocols/group-sync/constants.js'
import { GroupSyncRefusedError } from '../../core/protocols/group-sync/errors.js'
import { SyncFrame } from '../../core/protocols/group-sync/pb/group-sync.js'
import { Rng } from '../helpers/prng.js'

const group = newGroupId()

/** Bytes off the wire through the same bounded framing the protocol reads with. */
function readWire (bytes: Uint8Array): SyncMessage[] {
  const decoder = new FrameDecoder(MAX_SYNC_FRAME_BYTES)
  const out = [...decoder.push(bytes)].map(decodeSyncMessage)
  decoder.end()
  return out
}

function throwsNamed (fn: () => unknown, name: string, what?: string): void {
  assert.throws(fn, { name }, what)
}

/** A raw SyncFrame (fields the codec would never write). */
function raw (fields: Partial<SyncFrame>): Uint8Array {
  return SyncFrame.encode({
    kind: SyncFrame.Kind.STEP2, group: '', stateVector: new Uint8Array(), records: [], count: 0, errorName: '', errorMessage: '', ...fields
  })
}

describe('group-sync codec', () => {
  it('round-trips every message kind, through the framing', () => {
    const rng = new Rng(1)
    const messages: SyncMessage[] = [
      { kind: 'step1', group, stateVector: rng.bytes(40) },
      { kind: 'step1', group, stateVector: new Uint8Array() },
      { kind: 'step2', records: [rng.bytes(300), rng.bytes(1), rng.bytes(MAX_RECORD_BYTES)] },
      { kind: 'ack' },
      { kind: 'done', count: 0 },
      { kind: 'done', count: 10_000 },
      { kind: 'refusal', name: 'GroupSyncForbiddenError', message: 'not a member of this group' }
    ]
    assert.deepEqual(readWire(encodeFrames(messages.map(encodeSyncMessage))), messages)
  })

  it('copies records out of the frame', () => {
    const frame = encodeSyncMessage({ kind: 'step2', records: [Uint8Array.of(1, 2, 3)] })
    const msg = decodeSyncMessage(frame)
    assert.equal(msg.kind, 'step2')
    frame.fill(0)
    assert.deepEqual([...(msg.records[0] ?? [])], [1, 2, 3])
  })

  it('truncates a long refusal message to what the decoder accepts', () => {
    const msg = decodeSyncMessage(encodeSyncMessage({ kind: 'refusal', name: 'ProtocolLimitError', message: 'x'.repeat(10_000) }))
    assert.ok(msg.kind === 'refusal' && msg.message.length === 256)
  })

  it('refuses random bytes by name, never with a crash', () => {
    const rng = new Rng(7)
    for (let i = 0; i < 500; i++) {
      const bytes = rng.bytes(1 + rng.int(200))
      try {
        decodeSyncMessage(bytes)
      } catch (err) {
        assert.ok(['MalformedFrameError', 'ProtocolLimitError'].includes((err as Error).name), `case ${i}: ${(err as Error).name}`)
      }
    }
  })

  it('refuses a truncated frame (MalformedFrameError) and a stream cut inside a frame (TruncatedFrameError)', () => {
    const frame = encodeSyncMessage({ kind: 'step2', records: [new Uint8Array(300).fill(7)] })
    throwsNamed(() => decodeSyncMessage(frame.subarray(0, frame.byteLength - 10)), 'MalformedFrameError')
    const wire = encodeFrames([frame])
    throwsNamed(() => readWire(wire.subarray(0, wire.byteLength - 1)), 'TruncatedFrameError')
  })

  it('refuses oversized and malformed length prefixes before any payload', () => {
    throwsNamed(() => readWire(Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x10, 1, 2, 3)), 'FrameTooLargeError', 'a 4 GiB prefix')
    throwsNamed(() => readWire(encodeFrames([new Uint8Array(MAX_SYNC_FRAME_BYTES + 1)]).subarray(0, 16)), 'FrameTooLargeError', '1 MiB + 1')
    throwsNamed(() => readWire(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0x01)), 'InvalidLengthPrefixError')
  })

  it('refuses an unknown or unspecified message kind', () => {
    throwsNamed(() => decodeSyncMessage(Uint8Array.of(0x08, 0x09)), 'MalformedFrameError', 'kind 9')
    throwsNamed(() => decodeSyncMessage(Uint8Array.of(0x08, 0x00)), 'MalformedFrameError', 'kind 0')
    throwsNamed(() => decodeSyncMessage(new Uint8Array()), 'MalformedFrameError', 'empty frame')
  })

  it('checks each kind: group id, state vector, records, refusal', () => {
    const cases: Array<[string, Partial<SyncFrame>, string]> = [
      ['step 1 without a group', { kind: SyncFrame.Kind.STEP1 }, 'MalformedFrameError'],
      ['step 1 with a bad group id', { kind: SyncFrame.Kind.STEP1, group: 'not/a/group' }, 'MalformedFrameError'],
      ['a state vector over the bound', { kind: SyncFrame.Kind.STEP1, group, stateVector: new Uint8Array(MAX_STATE_VECTOR_BYTES + 1) }, 'ProtocolLimitError'],
      ['step 2 without records', { records: [] }, 'MalformedFrameError'],
      ['an empty record', { records: [Uint8Array.of(1), new Uint8Array()] }, 'MalformedFrameError'],
      ['a record over 100 KiB', { records: [new Uint8Array(MAX_RECORD_BYTES + 1)] }, 'ProtocolLimitError'],
      ['a chunk over 256 KiB', { records: [new Uint8Array(MAX_RECORD_BYTES), new Uint8Array(MAX_RECORD_BYTES), new Uint8Array(MAX_CHUNK_BYTES - 2 * MAX_RECORD_BYTES + 1)] }, 'ProtocolLimitError'],
      ['too many records', { records: Array.from({ length: MAX_CHUNK_RECORDS + 1 }, () => Uint8Array.of(1)) }, 'ProtocolLimitError'],
      ['a refusal without a name', { kind: SyncFrame.Kind.REFUSAL }, 'MalformedFrameError'],
      ['a refusal with a bad name', { kind: SyncFrame.Kind.REFUSAL, errorName: 'no spaces allowed' }, 'MalformedFrameError'],
      ['a refusal with a long name', { kind: SyncFrame.Kind.REFUSAL, errorName: 'E'.repeat(65) }, 'MalformedFrameError'],
      ['a refusal with a long message', { kind: SyncFrame.Kind.REFUSAL, errorName: 'E', errorMessage: 'm'.repeat(257) }, 'MalformedFrameError']
    ]
    for (const [what, fields, name] of cases) throwsNamed(() => decodeSyncMessage(raw(fields)), name, what)
    // exactly at the bounds is fine
    decodeSyncMessage(raw({ records: [new Uint8Array(MAX_RECORD_BYTES), new Uint8Array(MAX_RECORD_BYTES), new Uint8Array(MAX_CHUNK_BYTES - 2 * MAX_RECORD_BYTES)] }))
    decodeSyncMessage(raw({ records: Array.from({ length: MAX_CHUNK_RECORDS }, () => Uint8Array.of(1)) }))
    decodeSyncMessage(raw({ kind: SyncFrame.Kind.STEP1, group, stateVector: new Uint8Array(MAX_STATE_VECTOR_BYTES) }))
  })

  it('chunks records in order, each chunk within the byte and count bounds and one frame', () => {
    const rng = new Rng(3)
    const records = Array.from({ length: 10_000 }, () => rng.bytes(250 + rng.int(100)))
    const chunks = [...chunkRecords(records)]
    assert.deepEqual(chunks.flat(), records)
    for (const chunk of chunks) {
      assert.ok(chunk.reduce((n, r) => n + r.byteLength, 0) <= MAX_CHUNK_BYTES)
      assert.ok(encodeSyncMessage({ kind: 'step2', records: chunk }).byteLength <= MAX_SYNC_FRAME_BYTES)
    }
    assert.ok(chunks.length >= Math.ceil(3_000_000 / MAX_CHUNK_BYTES) - 1 && chunks.length < 20, `${chunks.length} chunks`)
    const tiny = [...chunkRecords(Array.from({ length: MAX_CHUNK_RECORDS + 1 }, () => Uint8Array.of(1)))]
    assert.deepEqual(tiny.map((c) => c.length), [MAX_CHUNK_RECORDS, 1])
    const big = [...chunkRecords(Array.from({ length: 5 }, () => new Uint8Array(MAX_RECORD_BYTES)))]
    assert.deepEqual(big.map((c) => c.length), [2, 2, 1])
    assert.deepEqual([...chunkRecords([])], [])
  })

  it('says which records can travel', () => {
    assert.equal(isSendableRecord(new Uint8Array()), false)
    assert.equal(isSendableRecord(new Uint8Array(MAX_RECORD_BYTES)), true)
    assert.equal(isSendableRecord(new Uint8Array(MAX_RECORD_BYTES + 1)), false)
  })

  it('throws a refusal as its own class when known, else GroupSyncRefusedError with the remote name', () => {
    for (const name of ['UnknownGroupError', 'GroupSyncForbiddenError', 'ProtocolLimitError', 'MalformedFrameError', 'GroupSyncTimeoutError', 'GroupSyncClosedError']) {
      assert.equal(refusalError(name, 'why').name, name)
    }
    const other = refusalError('InvalidRecordError', 'bad vector')
    assert.ok(other instanceof GroupSyncRefusedError)
    assert.equal(other.remoteName, 'InvalidRecordError')
  })
})
