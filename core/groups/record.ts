import { createHash, createPrivateKey, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import type { PrivateKey, PublicKey } from '@libp2p/interface'
import * as decoding from 'lib0/decoding'
import { owned } from '../bytes.js'
import { isGroupId, type GroupId, type PeerIdString } from '../ids.js'
import { GroupSignatureError, InvalidGroupRecordError } from './errors.js'
import { GroupRecord as GroupRecordPb } from './pb/group.js'
import { ed25519PublicKey } from './verify-job.js'
import { defaultPoolSize, VERIFY_BAD, VERIFY_OK, VerifyPool, type VerifyItem } from './verify-pool.js'

/**
 * One signed change to a group: a yjs update (V1) holding one transaction of `author`, signed
 * by the author's libp2p Ed25519 key over the group id, the update and `prev`. Records are
 * what travels (gossip, DM envelopes, group-sync) and what a group document stores as its log.
 *
 * `prev` is the recordHash of the author's previous record in the group (absent on its first,
 * and on records made before chaining): each author's records form a hash chain, so a good
 * signature on one record also vouches for every record it chains back to (verifyRecords).
 */
export interface GroupRecord {
  group: GroupId
  author: PeerIdString
  update: Uint8Array
  signature: Uint8Array
  prev?: Uint8Array
}

/** Largest yjs update one record may carry. */
export const MAX_RECORD_BYTES = 96 * 1024
/** Room for the group id, the author, the signature and protobuf tags around the update. */
const MAX_ENVELOPE_OVERHEAD = 512
const SIGNATURE_BYTES = 64
/** A recordHash (SHA-256). */
export const RECORD_HASH_BYTES = 32

/** Records without `prev` (an author's first, and records from before chaining). */
const RECORD_DOMAIN = new TextEncoder().encode('parley/group-record/1')
/** Records with `prev`. */
const CHAINED_RECORD_DOMAIN = new TextEncoder().encode('parley/group-record/2')
const RECORD_HASH_DOMAIN = 'parley/group-record-hash/1'
const CLIENT_DOMAIN = 'parley/group-client/1'

export function encodeRecord (r: GroupRecord): Uint8Array<ArrayBuffer> {
  return GroupRecordPb.encode({ group: r.group, author: r.author, update: owned(r.update), signature: owned(r.signature), prev: owned(r.prev ?? new Uint8Array(0)) })
}

/**
 * Decode and check the shape of one record (not its signature: see verifyRecord). The update,
 * signature and prev are copied out of `bytes` into one buffer of their own (compactRecord),
 * so a record never pins a larger receive buffer. Throws InvalidGroupRecordError.
 */
export function decodeRecord (bytes: Uint8Array): GroupRecord {
  if (bytes.byteLength > MAX_RECORD_BYTES + MAX_ENVELOPE_OVERHEAD) throw new InvalidGroupRecordError(`group record over ${MAX_RECORD_BYTES + MAX_ENVELOPE_OVERHEAD} bytes`)
  let pb: GroupRecordPb
  try {
    pb = GroupRecordPb.decode(bytes)
  } catch (err) {
    throw new InvalidGroupRecordError(`group record does not decode: ${(err as Error).message}`)
  }
  const record: GroupRecord = { group: pb.group as GroupId, author: pb.author as PeerIdString, update: pb.update, signature: pb.signature }
  if (pb.prev.byteLength > 0) record.prev = pb.prev
  checkRecordShape(record)
  return packed(record)
}

/**
 * The record with its update, signature and prev in one buffer of exactly their size (views
 * of it): `r` itself if they already are, else a copy. A group keeps every record it holds in
 * memory, and one buffer instead of three saves about 150 bytes per record.
 */
export function compactRecord (r: GroupRecord): GroupRecord {
  const size = r.update.byteLength + r.signature.byteLength + (r.prev?.byteLength ?? 0)
  const buffer = r.update.buffer
  const compact = r.update.byteOffset === 0 && buffer.byteLength === size && r.signature.buffer === buffer &&
    (r.prev === undefined || r.prev.buffer === buffer)
  return compact ? r : packed(r)
}

function packed (r: GroupRecord): GroupRecord {
  const u = r.update.byteLength
  const s = r.signature.byteLength
  const all = new Uint8Array(u + s + (r.prev?.byteLength ?? 0))
  all.set(r.update, 0)
  all.set(r.signature, u)
  const out: GroupRecord = { group: r.group, author: r.author, update: all.subarray(0, u), signature: all.subarray(u, u + s) }
  if (r.prev !== undefined) {
    all.set(r.prev, u + s)
    out.prev = all.subarray(u + s)
  }
  return out
}

/** Throws InvalidGroupRecordError unless the record's fields have the right form and sizes. */
export function checkRecordShape (r: GroupRecord): void {
  if (!isGroupId(r.group)) throw new InvalidGroupRecordError('group record names no valid group id')
  authorKey(r.author)
  if (r.update.byteLength === 0) throw new InvalidGroupRecordError('group record has an empty update')
  if (r.update.byteLength > MAX_RECORD_BYTES) throw new InvalidGroupRecordError(`group record update over ${MAX_RECORD_BYTES} bytes`)
  if (r.signature.byteLength !== SIGNATURE_BYTES) throw new InvalidGroupRecordError(`group record signature is not ${SIGNATURE_BYTES} bytes`)
  if (r.prev !== undefined && r.prev.byteLength !== RECORD_HASH_BYTES) throw new InvalidGroupRecordError(`group record prev is not ${RECORD_HASH_BYTES} bytes`)
}

/**
 * Authors' public keys as node KeyObjects (and their raw bytes, for the verification workers),
 * made once: libp2p's Ed25519 verify imports the key afresh on every call, which costs more
 * than the verification itself (catch-up verifies thousands of records of a handful of authors).
 */
const keyCache = new Map<string, AuthorKey>()
const KEY_CACHE_MAX = 4096

interface AuthorKey {
  key: KeyObject
  raw: Uint8Array
}

/** The Ed25519 public key a peer id string carries; InvalidGroupRecordError if it carries none. */
function authorKey (author: string): AuthorKey {
  let key = keyCache.get(author)
  if (key !== undefined) return key
  let publicKey: PublicKey
  try {
    const peer = peerIdFromString(author)
    if (peer.type !== 'Ed25519') throw new Error(`a ${peer.type} peer id`)
    publicKey = peer.publicKey
  } catch (err) {
    throw new InvalidGroupRecordError(`group record author is not an Ed25519 peer id: ${(err as Error).message}`)
  }
  const raw = publicKey.raw
  key = { key: ed25519PublicKey(raw), raw }
  if (keyCache.size >= KEY_CACHE_MAX) keyCache.clear()
  keyCache.set(author, key)
  return key
}

const signingKeys = new WeakMap<PrivateKey, KeyObject>()

function signingKey (privateKey: PrivateKey): KeyObject {
  let key = signingKeys.get(privateKey)
  if (key === undefined) {
    const raw = privateKey.raw // Ed25519: 32 bytes of seed, then the 32-byte public key
    key = createPrivateKey({
      format: 'jwk',
      key: { kty: 'OKP', crv: 'Ed25519', d: Buffer.from(raw.subarray(0, 32)).toString('base64url'), x: Buffer.from(privateKey.publicKey.raw).toString('base64url') }
    })
    signingKeys.set(privateKey, key)
  }
  return key
}

/** True if `peer` is an Ed25519 peer id string (the only kind that can author records). */
export function isEd25519PeerId (peer: string): peer is PeerIdString {
  try {
    authorKey(peer)
    return true
  } catch {
    return false
  }
}

/**
 * What an author signs: 'parley/group-record/1' 0x00 group 0x00 update for a record without
 * prev, 'parley/group-record/2' 0x00 group 0x00 prev (32 bytes) update for one with it.
 */
function signedMessage (r: Pick<GroupRecord, 'group' | 'update' | 'prev'>): Uint8Array {
  const domain = r.prev === undefined ? RECORD_DOMAIN : CHAINED_RECORD_DOMAIN
  const prev = r.prev ?? new Uint8Array(0)
  const groupBytes = new TextEncoder().encode(r.group)
  const msg = new Uint8Array(domain.byteLength + 1 + groupBytes.byteLength + 1 + prev.byteLength + r.update.byteLength)
  let at = 0
  msg.set(domain, at)
  at += domain.byteLength + 1
  msg.set(groupBytes, at)
  at += groupBytes.byteLength + 1
  msg.set(prev, at)
  at += prev.byteLength
  msg.set(r.update, at)
  return msg
}

/**
 * The hash a record's successor names as its `prev`: SHA-256 of
 * 'parley/group-record-hash/1' 0x00 author 0x00 signature (64 bytes) and what the author
 * signed. It covers the signature too, so a record is vouched for only with the very
 * signature its author made.
 */
export function recordHash (r: GroupRecord): Uint8Array {
  return new Uint8Array(createHash('sha256').update(RECORD_HASH_DOMAIN).update(ZERO).update(r.author).update(ZERO).update(r.signature).update(signedMessage(r)).digest())
}

const ZERO = new Uint8Array(1)

/**
 * Sign one yjs update as a record of `group`; the author is the key's peer id.
 *
 * @example
 * const record = await signRecord(privateKey, group, update)
 * await verifyRecord(record) // ok, or throws GroupSignatureError
 */
export async function signRecord (privateKey: PrivateKey, group: GroupId, update: Uint8Array, prev?: Uint8Array): Promise<GroupRecord> {
  return signRecordNow(privateKey, group, update, prev)
}

/** signRecord, synchronously (node's Ed25519 signs in about 40 µs). `prev`: see GroupRecord. */
export function signRecordNow (privateKey: PrivateKey, group: GroupId, update: Uint8Array, prev?: Uint8Array): GroupRecord {
  if (privateKey.type !== 'Ed25519') throw new GroupSignatureError(`group records are signed with Ed25519 keys, not ${privateKey.type}`)
  if (prev !== undefined && prev.byteLength !== RECORD_HASH_BYTES) throw new InvalidGroupRecordError(`prev is not ${RECORD_HASH_BYTES} bytes`)
  const author = peerIdFromPrivateKey(privateKey).toString() as PeerIdString
  const unsigned = prev === undefined ? { group, update } : { group, update, prev }
  // Packed into one buffer of the record's own (node's signature is a Buffer, possibly a view of a shared pool).
  const signature = cryptoSign(null, signedMessage(unsigned), signingKey(privateKey))
  return packed({ ...unsigned, author, signature })
}

/**
 * Throws GroupSignatureError unless `r.signature` is `r.author`'s over the group and update.
 * (Verified synchronously, about 80 µs: handing each one to libuv's thread pool costs more
 * than it saves on small machines. Many at once: verifyRecords.)
 */
export async function verifyRecord (r: GroupRecord): Promise<void> {
  const err = verifyNow(r)
  if (err !== undefined) throw err
}

/** The GroupSignatureError verifyRecord throws for `r`, or undefined if its signature is good. */
function verifyNow (r: GroupRecord): GroupSignatureError | undefined {
  let key: KeyObject
  try {
    key = authorKey(r.author).key
  } catch (err) {
    return new GroupSignatureError((err as Error).message)
  }
  let ok: boolean
  try {
    ok = cryptoVerify(null, signedMessage(r), key, r.signature)
  } catch (err) {
    return new GroupSignatureError(`group record signature does not parse: ${(err as Error).message}`)
  }
  return ok ? undefined : notSignedBy(r)
}

function notSignedBy (r: GroupRecord): GroupSignatureError {
  return new GroupSignatureError(`group record is not signed by its author ${r.author}`)
}

/** Below this many records a batch is verified on the calling thread (a worker round trip costs more). */
export const POOL_MIN_RECORDS = 64

let pool: VerifyPool | undefined

function sharedPool (): VerifyPool {
  pool ??= new VerifyPool(defaultPoolSize())
  return pool
}

/**
 * Start the verification workers verifyRecords uses, ahead of a catch-up: a worker takes
 * 0.1-0.5 s to boot on a small machine, which the first large batch would otherwise wait for.
 */
export function warmVerifiers (): void {
  sharedPool().warm()
}

/**
 * verifyRecord for many records, using the authors' hash chains: one entry per record,
 * undefined where the record is good, else the GroupSignatureError verifyRecord would throw.
 *
 * A record is good if its own signature is, or if a good record of the same author in the
 * batch names it as `prev`: the author signed that record's hash, which covers its bytes and
 * its signature, so it is exactly the record the author made. Only the newest record of each
 * chain in the batch has its signature checked, and a catch-up of thousands of one author's
 * records checks a handful. A record no good successor vouches for is checked on its own, so
 * the answer differs from verifyRecord's only where an author chained a record of its own to
 * one it had signed wrongly (a broken client hurting only its own records).
 * A large set of signatures is shared between this thread and the verification workers
 * (VerifyPool); items a worker could not check are verified here.
 *
 * @example
 * const errors = await verifyRecords(records)
 * const good = records.filter((_r, i) => errors[i] === undefined)
 */
export async function verifyRecords (records: readonly GroupRecord[], workers: VerifyPool = sharedPool()): Promise<Array<GroupSignatureError | undefined>> {
  const prevsOf = chainLinks(records)
  if (prevsOf === undefined) return await verifyEach(records, workers)
  const named = new Uint8Array(records.length)
  for (const prevs of prevsOf) for (const p of prevs ?? []) named[p] = 1
  const out = new Array<GroupSignatureError | undefined | null>(records.length).fill(null)
  const heads: number[] = []
  for (let i = 0; i < records.length; i++) if (named[i] === 0) heads.push(i)
  await settle(heads)
  // Down the chains from every good record: what it names as prev is good too.
  const good = heads.filter((i) => out[i] === undefined)
  for (let i = good.pop(); i !== undefined; i = good.pop()) {
    for (const p of prevsOf[i] ?? []) {
      if (out[p] !== null) continue
      out[p] = undefined
      good.push(p)
    }
  }
  // Named only by records that are not good: their own signature decides.
  const rest: number[] = []
  out.forEach((e, i) => { if (e === null) rest.push(i) })
  await settle(rest)
  return out as Array<GroupSignatureError | undefined>

  async function settle (indices: number[]): Promise<void> {
    if (indices.length === 0) return
    const errors = await verifyEach(indices.map((i) => records[i] as GroupRecord), workers)
    indices.forEach((i, k) => { out[i] = errors[k] })
  }
}

/**
 * For each record, the indices of the records of the same author whose recordHash is its
 * `prev`; undefined if no record in the batch has a prev (nothing to link).
 */
function chainLinks (records: readonly GroupRecord[]): Array<number[] | undefined> | undefined {
  if (!records.some((r) => r.prev !== undefined)) return undefined
  const byHash = new Map<string, number[]>()
  records.forEach((r, i) => {
    const key = linkKey(r.author, recordHash(r))
    const same = byHash.get(key)
    if (same === undefined) byHash.set(key, [i])
    else same.push(i)
  })
  return records.map((r) => r.prev === undefined ? undefined : byHash.get(linkKey(r.author, r.prev)))
}

function linkKey (author: string, hash: Uint8Array): string {
  return `${author}/${Buffer.from(hash.buffer, hash.byteOffset, hash.byteLength).toString('base64')}`
}

/** Each record's own signature: a large batch shared between this thread and the workers. */
async function verifyEach (records: readonly GroupRecord[], workers: VerifyPool): Promise<Array<GroupSignatureError | undefined>> {
  // null: not decided yet. Whatever is still null at the end is verified here (fail closed).
  const out = new Array<GroupSignatureError | undefined | null>(records.length).fill(null)
  const parts = workers.usable && records.length >= POOL_MIN_RECORDS ? workers.size + 1 : 1
  const per = Math.ceil(records.length / parts)
  // Workers take the later slices; this thread verifies the first one meanwhile.
  const offloaded: Array<Promise<void>> = []
  for (let start = per; start < records.length; start += per) {
    const end = Math.min(records.length, start + per)
    offloaded.push(verifySlice(workers, records, start, end, out))
  }
  for (let i = 0; i < Math.min(per, records.length); i++) out[i] = verifyNow(records[i] as GroupRecord)
  await Promise.all(offloaded)
  return out.map((e, i) => e === null ? verifyNow(records[i] as GroupRecord) : e)
}

/** Verify records[start, end) on a worker; anything it does not call good is verified here. */
async function verifySlice (workers: VerifyPool, records: readonly GroupRecord[], start: number, end: number, out: Array<GroupSignatureError | undefined | null>): Promise<void> {
  const items: VerifyItem[] = []
  const index: number[] = []
  for (let i = start; i < end; i++) {
    const r = records[i] as GroupRecord
    let raw: Uint8Array | undefined
    try {
      raw = authorKey(r.author).raw
    } catch {
      raw = undefined
    }
    if (raw?.byteLength === 32 && r.signature.byteLength === SIGNATURE_BYTES) {
      items.push({ key: raw, message: signedMessage(r), signature: r.signature })
      index.push(i)
    } else {
      out[i] = verifyNow(r)
    }
  }
  let status: Uint8Array | undefined
  if (items.length > 0) {
    try {
      status = await workers.verify(items)
    } catch {
      status = undefined // the worker failed: verified below, on this thread
    }
  }
  index.forEach((i, k) => {
    const r = records[i] as GroupRecord
    const s = status?.[k]
    if (s === VERIFY_OK) out[i] = undefined
    else if (s === VERIFY_BAD) out[i] = notSignedBy(r)
    else out[i] = verifyNow(r)
  })
}

/**
 * The yjs clientID a peer writes with in every group:
 * sha256('parley/group-client/1' || peer) read as a big-endian uint32, top bit cleared.
 */
export function clientIdOf (peer: string): number {
  const digest = createHash('sha256').update(CLIENT_DOMAIN).update(peer).digest()
  return digest.readUInt32BE(0) & 0x7fffffff
}

/** Where a record's structs sit: its single client, first clock and number of structs. */
export interface RecordSpan {
  client: number
  clock: number
  count: number
}

/**
 * Read the span from the head of a record's update without decoding its structs (records
 * hold exactly one client's structs, each of length one). InvalidGroupRecordError if the
 * head does not read.
 */
export function recordSpan (update: Uint8Array): RecordSpan {
  try {
    const decoder = decoding.createDecoder(update)
    const clients = decoding.readVarUint(decoder)
    if (clients !== 1) throw new Error(`${clients} client sections`)
    const count = decoding.readVarUint(decoder)
    const client = decoding.readVarUint(decoder)
    const clock = decoding.readVarUint(decoder)
    if (count < 1 || client > 0xffffffff) throw new Error('no structs')
    return { client, clock, count }
  } catch (err) {
    throw new InvalidGroupRecordError(`group record update has no valid head: ${(err as Error).message}`)
  }
}

/** A record's identity: `client:clock` of its first struct. */
export type RecordKey = string

export function recordKey (r: GroupRecord): RecordKey {
  const span = recordSpan(r.update)
  return `${span.client}:${span.clock}`
}
