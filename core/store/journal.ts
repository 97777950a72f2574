import { closeSync, fdatasyncSync, fstatSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs'
import { crc32 } from 'node:zlib'
import { forComponent } from '../logger.js'

const log = forComponent('store:journal')

/** One database operation: put `value` at `key`, or delete `key` when value is undefined. */
export interface JournalOp {
  key: string
  value?: string | Uint8Array
}

const HEADER = 8 // u32 payload length, u32 crc32 of the payload
const KIND_DEL = 0
const KIND_PUT_STRING = 1
const KIND_PUT_BYTES = 2

/**
 * An append-only write-ahead journal in front of the level database. Appending is one
 * synchronous `write()` on the main thread (a few microseconds, no thread-pool round trip),
 * after which the data survives a crash of the process exactly as a level batch written
 * without fsync does: both sit in the OS page cache. The store applies journaled batches to
 * level in the background and truncates the journal once everything in it is applied; on
 * open it replays whatever the journal still holds. Each record carries a CRC so a torn tail
 * (power loss mid-write) is detected and dropped.
 *
 * @example
 * const j = new Journal('/data/db.journal')
 * for (const batch of j.open()) await applyToLevel(batch)
 * j.append([{ key: '!msgs!k', value: '{...}' }])
 */
export class Journal {
  private fd = -1
  private bytes = 0

  constructor (private readonly path: string, private readonly sync = false) {}

  /** Open (creating if needed) and return the batches still in the journal, oldest first. */
  open (): JournalOp[][] {
    this.fd = openSync(this.path, 'a+', 0o600)
    const data = readFileSync(this.path)
    const batches: JournalOp[][] = []
    let offset = 0
    while (offset + HEADER <= data.byteLength) {
      const length = data.readUInt32BE(offset)
      const sum = data.readUInt32BE(offset + 4)
      const end = offset + HEADER + length
      if (end > data.byteLength) break
      const payload = data.subarray(offset + HEADER, end)
      if (crc32(payload) !== sum) break
      batches.push(decodeBatch(payload))
      offset = end
    }
    if (offset < data.byteLength) {
      log('dropping %d bytes of torn journal tail', data.byteLength - offset)
    }
    this.bytes = fstatSync(this.fd).size
    return batches
  }

  /** Durable against a process crash when this returns (and against power loss with sync). */
  append (ops: readonly JournalOp[]): void {
    const payload = encodeBatch(ops)
    const record = Buffer.allocUnsafe(HEADER + payload.byteLength)
    record.writeUInt32BE(payload.byteLength, 0)
    record.writeUInt32BE(crc32(payload), 4)
    payload.copy(record, HEADER)
    let written = 0
    while (written < record.byteLength) {
      written += writeSync(this.fd, record, written, record.byteLength - written)
    }
    if (this.sync) fdatasyncSync(this.fd)
    this.bytes += record.byteLength
  }

  /** Bytes in the journal now. */
  get size (): number {
    return this.bytes
  }

  /** Forget everything: call only when every journaled batch is in the database. */
  reset (): void {
    ftruncateSync(this.fd, 0)
    if (this.sync) fdatasyncSync(this.fd)
    this.bytes = 0
  }

  close (): void {
    if (this.fd >= 0) closeSync(this.fd)
    this.fd = -1
  }
}

function encodeBatch (ops: readonly JournalOp[]): Buffer {
  let size = 4
  for (const op of ops) {
    size += 1 + 4 + Buffer.byteLength(op.key) + 4
    if (typeof op.value === 'string') size += Buffer.byteLength(op.value)
    else if (op.value !== undefined) size += op.value.byteLength
  }
  const buf = Buffer.allocUnsafe(size)
  let o = buf.writeUInt32BE(ops.length, 0)
  for (const op of ops) {
    const kind = op.value === undefined ? KIND_DEL : typeof op.value === 'string' ? KIND_PUT_STRING : KIND_PUT_BYTES
    o = buf.writeUInt8(kind, o)
    const keyLen = buf.write(op.key, o + 4)
    o = buf.writeUInt32BE(keyLen, o) + keyLen
    if (typeof op.value === 'string') {
      const n = buf.write(op.value, o + 4)
      o = buf.writeUInt32BE(n, o) + n
    } else if (op.value !== undefined) {
      buf.set(op.value, o + 4)
      o = buf.writeUInt32BE(op.value.byteLength, o) + op.value.byteLength
    } else {
      o = buf.writeUInt32BE(0, o)
    }
  }
  return buf
}

function decodeBatch (buf: Buffer): JournalOp[] {
  const ops: JournalOp[] = []
  const count = buf.readUInt32BE(0)
  let o = 4
  for (let i = 0; i < count; i++) {
    const kind = buf.readUInt8(o)
    const keyLen = buf.readUInt32BE(o + 1)
    const key = buf.toString('utf8', o + 5, o + 5 + keyLen)
    o += 5 + keyLen
    const valLen = buf.readUInt32BE(o)
    o += 4
    if (kind === KIND_DEL) ops.push({ key })
    else if (kind === KIND_PUT_STRING) ops.push({ key, value: buf.toString('utf8', o, o + valLen) })
    else ops.push({ key, value: new Uint8Array(buf.subarray(o, o + valLen)) })
    o += valLen
  }
  return ops
}
