import v8 from 'node:v8'
import vm from 'node:vm'

export interface MemorySnapshot {
  rssBytes: number
  heapUsedBytes: number
  heapTotalBytes: number
  externalBytes: number
  arrayBuffersBytes: number
}

let gcFn: (() => void) | undefined | null = null

/**
 * A full GC if one can be had: `global.gc` when run with --expose-gc, else the flag is set
 * at runtime and `gc` fetched from a fresh context (a documented V8 trick). Returns false if
 * neither works, in which case heap figures include garbage.
 */
export function collectGarbage (): boolean {
  if (gcFn === null) {
    const g = (globalThis as { gc?: unknown }).gc
    if (typeof g === 'function') {
      gcFn = g as () => void
    } else {
      try {
        v8.setFlagsFromString('--expose_gc')
        const fn: unknown = vm.runInNewContext('gc')
        gcFn = typeof fn === 'function' ? fn as () => void : undefined
      } catch {
        gcFn = undefined
      }
    }
  }
  if (gcFn === undefined) return false
  gcFn()
  return true
}

export function snapshot (): MemorySnapshot {
  const m = process.memoryUsage()
  return { rssBytes: m.rss, heapUsedBytes: m.heapUsed, heapTotalBytes: m.heapTotal, externalBytes: m.external, arrayBuffersBytes: m.arrayBuffers }
}

/** Samples RSS and heapUsed on an interval and keeps the peaks. */
export class PeakSampler {
  peakRssBytes = 0
  peakHeapUsedBytes = 0
  private timer: ReturnType<typeof setInterval> | undefined

  start (intervalMs = 50): void {
    this.sample()
    this.timer = setInterval(() => { this.sample() }, intervalMs)
  }

  /** Stop sampling, after a last sample (none if it was never started: the peaks stay 0). */
  stop (): void {
    if (this.timer === undefined) return
    clearInterval(this.timer)
    this.timer = undefined
    this.sample()
  }

  private sample (): void {
    const m = process.memoryUsage()
    if (m.rss > this.peakRssBytes) this.peakRssBytes = m.rss
    if (m.heapUsed > this.peakHeapUsedBytes) this.peakHeapUsedBytes = m.heapUsed
  }
}

export function mib (bytes: number): number {
  return Math.round((bytes / (1024 * 1024)) * 10) / 10
}
