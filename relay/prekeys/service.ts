import type { Startable } from '@libp2p/interface'
import type { PeerIdString } from '../../core/ids.js'
import type { BundleData, BundleHeaderData, OneTimeKeyData } from '../../core/protocols/prekeys/codec.js'
import { PrekeyServer, type PrekeyBackend, type ProtocolHost } from '../../core/protocols/prekeys/server.js'
import { TokenBuckets } from '../../core/token-bucket.js'
import type { PrekeyStore } from './store.js'

export interface PrekeyLimits {
  /** Owners whose bundles the relay stores; a new owner past this is refused (PrekeyStoreFullError). */
  maxOwners: number
  /**
   * One-time keys one requester may take, in a burst and then per minute (across all
   * owners). Over budget, a FETCH still gets the header, without a one-time key.
   */
  claimBurst: number
  claimsPerMinute: number
}

export const DEFAULT_PREKEY_LIMITS: PrekeyLimits = {
  maxOwners: 100_000,
  claimBurst: 50,
  claimsPerMinute: 10
}

/** Counters for /metrics, beyond the protocol server's (`server.stats`). */
export interface PrekeyServiceStats {
  /** One-time keys handed out (each deleted first). */
  handedOut: number
  /** FETCHes answered without a one-time key because the requester was over its budget. */
  withheld: number
}

/**
 * `/parley/prekeys/1.0.0` on a relay: owners publish their Signal prekey bundles (the owner
 * is the Noise-verified caller and the header must be bound to its peer id, see
 * PrekeyServer), anyone fetches them. Each FETCH takes at most one one-time key, deleted
 * from the store before the answer leaves, so each is handed out once; a requester over its
 * claim budget gets the header alone, so one peer cannot drain everyone's one-time keys.
 *
 * @example
 * const prekeys = new PrekeyService(libp2p, store, DEFAULT_PREKEY_LIMITS)
 * await prekeys.start()
 */
export class PrekeyService implements Startable, PrekeyBackend {
  readonly server: PrekeyServer
  readonly stats: PrekeyServiceStats = { handedOut: 0, withheld: 0 }
  private readonly claims: TokenBuckets

  constructor (
    host: ProtocolHost,
    readonly store: PrekeyStore,
    private readonly limits: PrekeyLimits = DEFAULT_PREKEY_LIMITS,
    private readonly now: () => number = Date.now
  ) {
    this.claims = new TokenBuckets(limits.claimBurst, limits.claimsPerMinute / 60)
    this.server = new PrekeyServer(host, this)
  }

  async start (): Promise<void> {
    await this.server.start()
  }

  async stop (): Promise<void> {
    await this.server.stop()
  }

  async publish (owner: PeerIdString, header: BundleHeaderData, preKeys: OneTimeKeyData[]): Promise<number> {
    return await this.store.publish(owner, header, preKeys, this.limits.maxOwners)
  }

  async fetch (owner: PeerIdString, requester: PeerIdString): Promise<BundleData | undefined> {
    let overBudget = false
    const bundle = await this.store.take(owner, () => {
      overBudget = !this.claims.take(requester, this.now())
      return !overBudget
    })
    if (overBudget) this.stats.withheld++
    if (bundle?.oneTime !== undefined) this.stats.handedOut++
    return bundle
  }
}
