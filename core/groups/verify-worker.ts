/**
 * The worker side of verify-pool.ts: Ed25519 verification of group-record signatures off the
 * main thread. It knows nothing of records: it gets raw public keys, the exact signed messages
 * and the signatures, and answers one status per item (VERIFY_OK, VERIFY_BAD, VERIFY_ERROR).
 * The main thread builds the messages and decides what a status means.
 */
import { verify, type KeyObject } from 'node:crypto'
import { parentPort } from 'node:worker_threads'
import { ed25519PublicKey, VERIFY_BAD, VERIFY_ERROR, VERIFY_OK, type VerifyJob, type VerifyAnswer } from './verify-job.js'
const KEY_CACHE_MAX = 4096
const keys = new Map<string, KeyObject>()

function keyOf (raw: Uint8Array): KeyObject {
  const id = Buffer.from(raw).toString('base64')
  let key = keys.get(id)
  if (key === undefined) {
    key = ed25519PublicKey(raw)
    if (keys.size >= KEY_CACHE_MAX) keys.clear()
    keys.set(id, key)
  }
  return key
}

function run (job: VerifyJob): VerifyAnswer {
  const status = new Uint8Array(job.count)
  for (let i = 0; i < job.count; i++) {
    try {
      const key = keyOf(job.keys.subarray(i * 32, i * 32 + 32))
      const msg = job.messages.subarray(job.offsets[i], job.offsets[i + 1])
      status[i] = verify(null, msg, key, job.signatures.subarray(i * 64, i * 64 + 64)) ? VERIFY_OK : VERIFY_BAD
    } catch {
      status[i] = VERIFY_ERROR
    }
  }
  return { id: job.id, status }
}

parentPort?.on('message', (job: VerifyJob) => {
  const answer = run(job)
  parentPort?.postMessage(answer, [answer.status.buffer])
})
