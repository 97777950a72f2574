import { Level } from 'level'
import type { PeerIdString } from '../../core/ids.js'
import { decodeHeader, encodeHeader, type BundleData, type BundleHeaderData, type OneTimeKeyData } from '../../core/protocols/prekeys/codec.js'
import { MAX_ONE_TIME_KEYS_STORED } from '../../core/protocols/prekeys/constants.js'
import { PrekeyStoreFullError } from '../../core/protocols/prekeys/errors.js'

export interface PrekeyStoreOptions {
  /** fsync every batch (survives a power cut, not only a crash of the process). */
  sync?: boolean
  /** One-time keys kept per owner; more are dropped. */
  maxOneTimeKeys?: number
}

const headerKey = (owner: string): string => `h!${owner}`
const countKey = (owner: string): string => `n!${owner}`
const oneTimeKey = (owner: string, id: number): string => `k!${owner}\x00${id.toString(16).padStart(8, '0')}`

function countBytes (n: number): Uint8Array {
  const out = new Uint8Array(4)
  new DataView(out.buffer).setUint32(0, n)
  return out
}

function readCount (bytes: Uint8Array): number {
  return bytes.byteLength === 4 ? new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0) : 0
}

function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((x, i) => x === b[i])
}

type Op = { type: 'put', key: string, value: Uint8Array } | { type: 'del', key: string }

/**
 * Prekey bundles on the relay's disk (level, `<data>/prekeys`): per owner the latest header
 * and its one-time keys. Every change is one batch, awaited before the caller answers, and
 * all changes run one at a time, so a one-time key is deleted on disk before it is handed
 * out and is never handed out twice, even if the relay is killed right after. The number of
 * one-time keys per owner is kept on disk too and in memory (rebuilt on open).
 *
 * Keys: `h!<owner>` header (protobuf), `n!<owner>` one-time key count (uint32),
 * `k!<owner>\0<id, 8 hex>` one-time public key.
 *
 * @example
 * const store = new PrekeyStore(join(dataDir, 'prekeys'))
 * await store.open()
 * const remaining = await store.publish(owner, header, oneTimeKeys, 100_000)
 * const bundle = await store.take(owner, () => true) // header + the lowest-id one-time key, now deleted
 */
export class PrekeyStore {
  private readonly db: Level<string, Uint8Array>
  /** Owner -> one-time keys held; an owner is here iff its header is stored. */
  private readonly counts = new Map<string, number>()
  private queue: Promise<unknown> = Promise.resolve()
  private readonly maxOneTimeKeys: number

  constructor (location: string, private readonly options: PrekeyStoreOptions = {}) {
    this.db = new Level<string, Uint8Array>(location, { valueEncoding: 'view' })
    this.maxOneTimeKeys = options.maxOneTimeKeys ?? MAX_ONE_TIME_KEYS_STORED
  }

  async open (): Promise<void> {
    await this.db.open()
    for await (const key of this.db.keys({ gt: 'h!', lt: 'h"' })) this.counts.set(key.slice(2), 0)
    for await (const [key, value] of this.db.iterator({ gt: 'n!', lt: 'n"' })) {
      const owner = key.slice(2)
      if (this.counts.has(owner)) this.counts.set(owner, readCount(value))
    }
  }

  async close (): Promise<void> {
    await this.queue
    await this.db.close()
  }

  /** Whether `owner` has a bundle here. */
  has (owner: string): boolean {
    return this.counts.has(owner)
  }

  /** One-time keys held for `owner`. */
  oneTimeCount (owner: string): number {
    return this.counts.get(owner) ?? 0
  }

  /** Owners stored and one-time keys held in all (metrics). */
  totals (): { owners: number, oneTimeKeys: number } {
    let oneTimeKeys = 0
    for (const n of this.counts.values()) oneTimeKeys += n
    return { owners: this.counts.size, oneTimeKeys }
  }

  /**
   * Replace `owner`'s header and add one-time keys whose ids are not held yet, up to the
   * per-owner cap (extra keys are dropped). A header with a different identity key than the
   * stored one drops every stored one-time key first: they belong to the old identity
   * (e.g. a reinstall) and their private halves are gone. Returns the one-time keys now
   * held. Throws PrekeyStoreFullError for a new owner when `maxOwners` are stored.
   * The header and keys must already be verified (verifyHeader, checkOneTimeKeys).
   */
  async publish (owner: PeerIdString, header: BundleHeaderData, preKeys: readonly OneTimeKeyData[], maxOwners: number): Promise<number> {
    return await this.serial(async () => {
      const known = this.counts.get(owner)
      if (known === undefined && this.counts.size >= maxOwners) {
        throw new PrekeyStoreFullError(`this relay stores bundles for ${maxOwners} owners and holds no more`)
      }
      const ops: Op[] = []
      let count = known ?? 0
      if (count > 0 && !await this.sameIdentity(owner, header)) {
        for await (const key of this.db.keys({ gt: `k!${owner}\x00`, lt: `k!${owner}\x01` })) ops.push({ type: 'del', key })
        count = 0
      }
      if (count < this.maxOneTimeKeys && preKeys.length > 0) {
        // Ids already held are retries: kept as they are (only worth a read if any are held).
        const held = count > 0 ? await this.db.getMany(preKeys.map((k) => oneTimeKey(owner, k.id))) : []
        preKeys.forEach((k, i) => {
          if (count >= this.maxOneTimeKeys || held[i] !== undefined) return
          ops.push({ type: 'put', key: oneTimeKey(owner, k.id), value: k.publicKey })
          count++
        })
      }
      ops.push({ type: 'put', key: headerKey(owner), value: encodeHeader(header) })
      ops.push({ type: 'put', key: countKey(owner), value: countBytes(count) })
      await this.db.batch(ops, { sync: this.options.sync ?? false })
      this.counts.set(owner, count)
      return count
    })
  }

  /**
   * `owner`'s bundle, or undefined. If one-time keys are held and `mayClaim()` agrees (it is
   * asked only then), the lowest-id one is deleted (durably, before this returns) and
   * included; otherwise the header comes alone.
   */
  async take (owner: PeerIdString, mayClaim: () => boolean): Promise<BundleData | undefined> {
    if (!this.counts.has(owner)) return undefined // owners are never removed: no read needed
    return await this.serial(async () => {
      const bytes = await this.db.get(headerKey(owner))
      if (bytes === undefined) return undefined
      const header = decodeHeader(bytes)
      const count = this.counts.get(owner) ?? 0
      if (count === 0 || !mayClaim()) return { header }
      for await (const [key, publicKey] of this.db.iterator({ gt: `k!${owner}\x00`, lt: `k!${owner}\x01`, limit: 1 })) {
        const id = Number.parseInt(key.slice(key.indexOf('\x00') + 1), 16)
        await this.db.batch([{ type: 'del', key }, { type: 'put', key: countKey(owner), value: countBytes(count - 1) }], { sync: this.options.sync ?? false })
        this.counts.set(owner, count - 1)
        return { header, oneTime: { id, publicKey: new Uint8Array(publicKey) } }
      }
      // The count said there were keys but none is stored: trust the keys.
      await this.db.put(countKey(owner), countBytes(0), { sync: this.options.sync ?? false })
      this.counts.set(owner, 0)
      return { header }
    })
  }

  private async sameIdentity (owner: string, header: BundleHeaderData): Promise<boolean> {
    const stored = await this.db.get(headerKey(owner))
    if (stored === undefined) return false
    try {
      return sameBytes(decodeHeader(stored).identityKey, header.identityKey)
    } catch {
      return false // unreadable: start over
    }
  }

  /** Run changes one at a time: check-then-write sequences never interleave. */
  private async serial<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn)
    this.queue = run.catch(() => {})
    return await run
  }
}
