/**
 * A clock a test moves by hand; services take its `now` for times, TTLs and rate buckets.
 *
 * @example
 * const clock = new FakeClock()
 * const service = new MailboxService(node, store, limits, clock.now)
 * clock.advance(1000)
 */
export class FakeClock {
  t = 1_700_000_000_000
  readonly now = (): number => this.t
  advance (ms: number): void { this.t += ms }
}
