/**
 * Checks the assumption behind every cross-process figure: that sharedNow() (util.ts: the
 * system's monotonic clock) reads the same in every peer process.
 * NTP-style over IPC: the harness asks each peer for its clock many times and keeps the
 * fastest exchange, whose midpoint is the best estimate of "now" on the harness's clock.
 */
import type { PeerHandle } from './peer.js'
import { sharedNow } from './util.js'

export interface ClockCheck {
  /** When it was taken, e.g. 'floor, before'. */
  when: string
  /** B's shared clock minus A's (ms): what a cross-process figure could be off by. */
  offsetMs: number
  /** The offset is known to within this (half the fastest IPC round trip to A, plus B's). */
  uncertaintyMs: number
  /** Exchanges with each peer. */
  samples: number
}

export async function offsetOf (peer: PeerHandle, samples: number): Promise<{ offset: number, halfRtt: number }> {
  let best = Number.POSITIVE_INFINITY
  let offset = Number.NaN
  for (let i = 0; i < samples; i++) {
    const t0 = sharedNow()
    const { t } = await peer.call('clock.now', {})
    const t1 = sharedNow()
    if (t1 - t0 < best) {
      best = t1 - t0
      offset = t - (t0 + t1) / 2
    }
  }
  return { offset, halfRtt: best / 2 }
}

export async function checkClocks (when: string, a: PeerHandle, b: PeerHandle, samples = 200): Promise<ClockCheck> {
  const oa = await offsetOf(a, samples)
  const ob = await offsetOf(b, samples)
  return { when, offsetMs: ob.offset - oa.offset, uncertaintyMs: oa.halfRtt + ob.halfRtt, samples }
}
