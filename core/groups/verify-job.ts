/**
 * What the main thread and a verification worker (verify-worker.ts) say to each other, and the
 * one way both make a key. Only node's own modules: the worker loads this and nothing else
 * of ours, so it starts in milliseconds.
 */
import { createPublicKey, type KeyObject } from 'node:crypto'

/** DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32 raw key bytes follow. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

/** A node KeyObject for a raw 32-byte Ed25519 public key (throws if node cannot use it). */
export function ed25519PublicKey (raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' })
}

/** A signature verified. */
export const VERIFY_OK = 0
/** A signature that does not verify. */
export const VERIFY_BAD = 1
/** Verification threw (a key or signature node could not use): the caller finds out why on its own thread. */
export const VERIFY_ERROR = 2
/** One Ed25519 check: the raw 32-byte public key, the exact signed bytes, the 64-byte signature. */
export interface VerifyItem {
  key: Uint8Array
  message: Uint8Array
  signature: Uint8Array
}

/** What goes to a worker: `count` items packed into three buffers (messages cut at `offsets`). */
export interface VerifyJob {
  id: number
  count: number
  keys: Uint8Array<ArrayBuffer>
  messages: Uint8Array<ArrayBuffer>
  offsets: Uint32Array<ArrayBuffer>
  signatures: Uint8Array<ArrayBuffer>
}

/** A worker's answer: one status per item of job `id`. */
export interface VerifyAnswer {
  id: number
  status: Uint8Array<ArrayBuffer>
}
