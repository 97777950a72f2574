import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { forComponent } from '../logger.js'
import { type VerifyAnswer, type VerifyItem, type VerifyJob } from './verify-job.js'

const log = forComponent('groups:verify')

export { VERIFY_BAD, VERIFY_ERROR, VERIFY_OK, type VerifyItem } from './verify-job.js'

interface Pending {
  resolve: (status: Uint8Array) => void
  reject: (err: Error) => void
}

interface Slot {
  worker: Worker
  pending: Map<number, Pending>
}

const WORKER_URL = new URL('./verify-worker.js', import.meta.url)
/** Workers that failed this many times in a row: the pool gives up and says so (callers verify on their own thread). */
const MAX_FAILURES = 3

/**
 * Ed25519 verification on worker threads, so a catch-up of thousands of signed records uses
 * the machine's other cores while the main thread checks and applies. Workers start on first
 * use and do not keep the process alive while idle. A job whose worker dies is rejected: the
 * caller then verifies those items itself, so a failing pool never lets anything through.
 *
 * @example
 * const pool = new VerifyPool(1)
 * const status = await pool.verify([{ key, message, signature }]) // Uint8Array [VERIFY_OK]
 */
export class VerifyPool {
  private readonly slots: Array<Slot | undefined>
  private nextId = 1
  private next = 0
  private failures = 0

  constructor (readonly size: number) {
    this.slots = new Array<Slot | undefined>(size).fill(undefined)
  }

  /** False once workers failed repeatedly (or the pool has none): verify on the caller's thread. */
  get usable (): boolean {
    return this.size > 0 && this.failures < MAX_FAILURES
  }

  /** Verify `items` on one worker; resolves one status per item, rejects if the worker fails. */
  async verify (items: readonly VerifyItem[]): Promise<Uint8Array> {
    if (!this.usable) throw new Error('no verification workers')
    const job = pack(this.nextId++, items)
    const slot = this.slot(this.next++ % this.size)
    return await new Promise<Uint8Array>((resolve, reject) => {
      if (slot.pending.size === 0) slot.worker.ref()
      slot.pending.set(job.id, { resolve, reject })
      slot.worker.postMessage(job, [job.keys.buffer, job.messages.buffer, job.offsets.buffer, job.signatures.buffer])
    })
  }

  /** Start the workers now (they take a while to boot: better before the first large batch than during it). */
  warm (): void {
    if (!this.usable) return
    for (let i = 0; i < this.size; i++) this.slot(i)
  }

  /** Stop every worker (pending jobs are rejected). */
  async close (): Promise<void> {
    await Promise.all(this.slots.map(async (slot, i) => {
      if (slot === undefined) return
      this.slots[i] = undefined
      this.fail(slot, new Error('verification pool closed'))
      await slot.worker.terminate()
    }))
  }

  private slot (i: number): Slot {
    const existing = this.slots[i]
    if (existing !== undefined) return existing
    const worker = new Worker(WORKER_URL)
    const slot: Slot = { worker, pending: new Map() }
    worker.on('message', (answer: VerifyAnswer) => {
      const p = slot.pending.get(answer.id)
      if (p === undefined) return
      slot.pending.delete(answer.id)
      if (slot.pending.size === 0) worker.unref()
      this.failures = 0
      p.resolve(answer.status)
    })
    worker.on('error', (err) => {
      log.error('signature worker failed: %e', err)
      this.failures++
      this.fail(slot, err)
    })
    worker.on('exit', (code) => {
      if (this.slots[i] === slot) this.slots[i] = undefined
      this.fail(slot, new Error(`signature worker exited with ${code}`))
    })
    // After the listeners: attaching one refs the worker again.
    worker.unref()
    this.slots[i] = slot
    return slot
  }

  private fail (slot: Slot, err: Error): void {
    const pending = [...slot.pending.values()]
    slot.pending.clear()
    for (const p of pending) p.reject(err)
  }
}

function pack (id: number, items: readonly VerifyItem[]): VerifyJob {
  const count = items.length
  const keys = new Uint8Array(count * 32)
  const signatures = new Uint8Array(count * 64)
  const offsets = new Uint32Array(count + 1)
  let total = 0
  for (const item of items) total += item.message.byteLength
  const messages = new Uint8Array(total)
  let o = 0
  items.forEach((item, i) => {
    keys.set(item.key.subarray(0, 32), i * 32)
    signatures.set(item.signature.subarray(0, 64), i * 64)
    offsets[i] = o
    messages.set(item.message, o)
    o += item.message.byteLength
  })
  offsets[count] = o
  return { id, count, keys, messages, offsets, signatures }
}

/**
 * Workers worth having here: none below 4 cores, else the cores beyond two, at most 3. On 2
 * cores the other one is busy during a catch-up (the transfer, level's writes, usually the
 * sending peer too): a 10,000-record catch-up measured slower with a worker (3.1-4.3 s) than
 * without (2.8-3.3 s), although verifying 10,000 records alone took half the time with it.
 */
export function defaultPoolSize (): number {
  return Math.max(0, Math.min(3, availableParallelism() - 2))
}
