/**
 * Per-key token buckets (e.g. per peer id): `burst` tokens at most, refilled at
 * `perSecond`. Memory stays bounded under a flood of new keys: past `maxKeys` every bucket
 * is forgotten (they all refill to a full burst).
 *
 * @example
 * const buckets = new TokenBuckets(50, 10 / 60)
 * if (!buckets.take(peerId, Date.now())) { ...over budget... }
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number, at: number }>()

  constructor (
    private readonly burst: number,
    private readonly perSecond: number,
    private readonly maxKeys = 100_000
  ) {}

  /** Take one token for `key` at time `now` (ms); false if its bucket is empty. */
  take (key: string, now: number): boolean {
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: now }
    b.tokens = Math.min(this.burst, b.tokens + Math.max(0, now - b.at) / 1000 * this.perSecond)
    b.at = now
    if (this.buckets.size > this.maxKeys) this.buckets.clear()
    this.buckets.set(key, b)
    if (b.tokens < 1) return false
    b.tokens -= 1
    return true
  }
}
