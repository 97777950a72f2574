import { owned } from '../../bytes.js'
import { InvalidRequestError, type ParleyError } from '../../errors.js'
import { isGroupId, type GroupId } from '../../ids.js'
import { FrameTooLargeError, InvalidLengthPrefixError, MalformedFrameError, ProtocolLimitError, refusalDecoder, TruncatedFrameError } from '../errors.js'
import {
  MAX_CHUNK_BYTES, MAX_CHUNK_RECORDS, MAX_RECORD_BYTES, MAX_STATE_VECTOR_BYTES, MAX_SYNC_ERROR_MESSAGE, MAX_SYNC_ERROR_NAME
} from './constants.js'
import { GroupSyncClosedError, GroupSyncRefusedError, GroupSyncTimeoutError, GroupSyncForbiddenError, UnknownGroupError } from './errors.js'
import { SyncFrame } from './pb/group-sync.js'

/**
 * One group-sync frame as the protocol sees it (see pb/group-sync.proto). State vectors and
 * records are opaque bytes: the backend (the group doc) gives them meaning.
 */
export type SyncMessage =
  | { kind: 'step1', group: GroupId, stateVector: Uint8Array }
  | { kind: 'step2', records: Uint8Array[] }
  | { kind: 'ack' }
  | { kind: 'done', count: number }
  | { kind: 'refusal', name: string, message: string }

export type SyncKind = SyncMessage['kind']

const ERROR_NAME_RE = /^[A-Za-z][A-Za-z0-9]*$/

const EMPTY: SyncFrame = { kind: SyncFrame.Kind.KIND_UNSPECIFIED, group: '', stateVector: new Uint8Array(), records: [], count: 0, errorName: '', errorMessage: '' }

/** A message as frame bytes (without the length prefix). */
export function encodeSyncMessage (msg: SyncMessage): Uint8Array<ArrayBuffer> {
  switch (msg.kind) {
    case 'step1':
      return SyncFrame.encode({ ...EMPTY, kind: SyncFrame.Kind.STEP1, group: msg.group, stateVector: owned(msg.stateVector) })
    case 'step2':
      return SyncFrame.encode({ ...EMPTY, kind: SyncFrame.Kind.STEP2, records: msg.records.map(owned) })
    case 'ack':
      return SyncFrame.encode({ ...EMPTY, kind: SyncFrame.Kind.ACK })
    case 'done':
      return SyncFrame.encode({ ...EMPTY, kind: SyncFrame.Kind.DONE, count: msg.count })
    case 'refusal':
      return SyncFrame.encode({
        ...EMPTY,
        kind: SyncFrame.Kind.REFUSAL,
        errorName: msg.name.slice(0, MAX_SYNC_ERROR_NAME),
        errorMessage: msg.message.slice(0, MAX_SYNC_ERROR_MESSAGE)
      })
  }
}

/** The refusal that tells the other side why we stop: the error's name and (truncated) message. */
export function refusalOf (err: ParleyError): SyncMessage {
  return { kind: 'refusal', name: err.name, message: err.message.slice(0, MAX_SYNC_ERROR_MESSAGE) }
}

/**
 * Decode and check one frame: an unknown kind, a bad group id, an empty record or a
 * malformed refusal is MalformedFrameError; a state vector, record or chunk over its bound
 * is ProtocolLimitError. Record bytes are copied out of the frame.
 *
 * @example
 * const msg = decodeSyncMessage(frame)
 * if (msg.kind === 'step2') await backend.receive(group, from, msg.records)
 */
export function decodeSyncMessage (frame: Uint8Array): SyncMessage {
  let pb: SyncFrame
  try {
    pb = SyncFrame.decode(frame, { limits: { records: MAX_CHUNK_RECORDS } })
  } catch (err) {
    if ((err as Error).name === 'MaxLengthError') throw new ProtocolLimitError(`step 2 frame carries over ${MAX_CHUNK_RECORDS} records`)
    throw new MalformedFrameError(`group-sync frame does not decode: ${(err as Error).message}`)
  }
  switch (pb.kind) {
    case SyncFrame.Kind.STEP1:
      if (!isGroupId(pb.group)) throw new MalformedFrameError('step 1 does not name a valid group id')
      if (pb.stateVector.byteLength > MAX_STATE_VECTOR_BYTES) {
        throw new ProtocolLimitError(`state vector of ${pb.stateVector.byteLength} bytes; at most ${MAX_STATE_VECTOR_BYTES}`)
      }
      return { kind: 'step1', group: pb.group, stateVector: new Uint8Array(pb.stateVector) }
    case SyncFrame.Kind.STEP2:
      return { kind: 'step2', records: checkChunk(pb.records) }
    case SyncFrame.Kind.ACK:
      return { kind: 'ack' }
    case SyncFrame.Kind.DONE:
      return { kind: 'done', count: pb.count }
    case SyncFrame.Kind.REFUSAL:
      if (!ERROR_NAME_RE.test(pb.errorName) || pb.errorName.length > MAX_SYNC_ERROR_NAME || pb.errorMessage.length > MAX_SYNC_ERROR_MESSAGE) {
        throw new MalformedFrameError('malformed refusal')
      }
      return { kind: 'refusal', name: pb.errorName, message: pb.errorMessage }
    default:
      throw new MalformedFrameError(`unknown group-sync frame kind ${String(pb.kind)}`)
  }
}

function checkChunk (records: readonly Uint8Array[]): Uint8Array[] {
  if (records.length === 0) throw new MalformedFrameError('step 2 frame without records')
  let total = 0
  const out: Uint8Array[] = []
  for (const r of records) {
    if (r.byteLength === 0) throw new MalformedFrameError('empty record')
    if (r.byteLength > MAX_RECORD_BYTES) throw new ProtocolLimitError(`record of ${r.byteLength} bytes; at most ${MAX_RECORD_BYTES}`)
    total += r.byteLength
    if (total > MAX_CHUNK_BYTES) throw new ProtocolLimitError(`step 2 frame carries over ${MAX_CHUNK_BYTES} bytes of records`)
    out.push(new Uint8Array(r)) // a copy: the frame's buffer is not kept alive by stored records
  }
  return out
}

/** Can this record travel at all (the receiver refuses empty and oversized records)? */
export function isSendableRecord (record: Uint8Array): boolean {
  return record.byteLength > 0 && record.byteLength <= MAX_RECORD_BYTES
}

/**
 * Split records into STEP2 chunks of at most MAX_CHUNK_BYTES and MAX_CHUNK_RECORDS, in order.
 * Every record must be sendable (see isSendableRecord).
 */
export function * chunkRecords (records: readonly Uint8Array[]): Generator<Uint8Array[]> {
  let chunk: Uint8Array[] = []
  let bytes = 0
  for (const r of records) {
    if (chunk.length > 0 && (bytes + r.byteLength > MAX_CHUNK_BYTES || chunk.length === MAX_CHUNK_RECORDS)) {
      yield chunk
      chunk = []
      bytes = 0
    }
    chunk.push(r)
    bytes += r.byteLength
  }
  if (chunk.length > 0) yield chunk
}

/** The error a refusal named `name` is thrown as: its own class when known, else GroupSyncRefusedError. */
export const refusalError = refusalDecoder([
  UnknownGroupError, GroupSyncForbiddenError, GroupSyncTimeoutError, GroupSyncClosedError, ProtocolLimitError, MalformedFrameError,
  FrameTooLargeError, InvalidLengthPrefixError, TruncatedFrameError, InvalidRequestError
], GroupSyncRefusedError, 'refused by the peer')
