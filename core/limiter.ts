/**
 * At most `limit` tasks at once per key (e.g. per relay); the others wait their turn, in the
 * order they came. A relay takes only a few streams of one protocol per connection at a time
 * and resets the rest, so a node asking it many things at once (a group's creator looking up
 * 49 members) must queue its own requests instead of having most of them refused.
 *
 * @example
 * const perRelay = new KeyedLimiter(4)
 * await Promise.all(peers.map(async (p) => await perRelay.run(relayId, async () => await lookup(relayId, p))))
 */
export class KeyedLimiter {
  private readonly slots = new Map<string, { active: number, waiting: Array<() => void> }>()

  constructor (readonly limit: number) {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`limit must be a positive integer, not ${limit}`)
  }

  /** Tasks running now for `key`. */
  active (key: string): number {
    return this.slots.get(key)?.active ?? 0
  }

  async run<T> (key: string, task: () => Promise<T>): Promise<T> {
    let slot = this.slots.get(key)
    if (slot === undefined) {
      slot = { active: 0, waiting: [] }
      this.slots.set(key, slot)
    }
    if (slot.active < this.limit) {
      slot.active++
    } else {
      const s = slot
      // The finishing task hands its place over: `active` stays as it is.
      await new Promise<void>((resolve) => { s.waiting.push(resolve) })
    }
    try {
      return await task()
    } finally {
      const next = slot.waiting.shift()
      if (next !== undefined) {
        next()
      } else {
        slot.active--
        if (slot.active === 0) this.slots.delete(key)
      }
    }
  }
}
