/**
 * Small statistics helpers for the benchmark harness. All times are milliseconds
 * (fractional, from performance.now()).
 */

export interface LatencySummary {
  samples: number
  min: number
  mean: number
  p50: number
  p90: number
  p99: number
  max: number
}

/**
 * The p-th percentile (0..100) of an ascending-sorted array, nearest-rank method: the
 * smallest value with at least p% of samples at or below it.
 */
export function percentile (sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  if (p <= 0) return sorted[0] as number
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length, rank) - 1] as number
}

export function summarize (samples: readonly number[]): LatencySummary {
  const sorted = [...samples].sort((a, b) => a - b)
  const sum = sorted.reduce((acc, v) => acc + v, 0)
  return {
    samples: sorted.length,
    min: sorted[0] ?? Number.NaN,
    mean: sorted.length === 0 ? Number.NaN : sum / sorted.length,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted[sorted.length - 1] ?? Number.NaN
  }
}

/** Divide every figure of a summary (e.g. RTT -> one-way estimate). */
export function scaleSummary (s: LatencySummary, factor: number): LatencySummary {
  return {
    samples: s.samples,
    min: s.min * factor,
    mean: s.mean * factor,
    p50: s.p50 * factor,
    p90: s.p90 * factor,
    p99: s.p99 * factor,
    max: s.max * factor
  }
}

/** Messages per second, given a count and an elapsed time in ms. */
export function rate (count: number, elapsedMs: number): number {
  return elapsedMs > 0 ? (count * 1000) / elapsedMs : Number.NaN
}

/** Round for display and JSON (keeps three decimals for ms figures). */
export function round (n: number, digits = 3): number {
  if (!Number.isFinite(n)) return n
  const f = 10 ** digits
  return Math.round(n * f) / f
}
