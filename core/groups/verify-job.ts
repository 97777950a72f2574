/**
 * What the main thread and a verification worker (verify-worker.ts) say to each other. No
 * imports: the worker loads this and node's own modules only, so it starts in milliseconds.
 */

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
