import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'

export const now = (): number => performance.now()

/** A fresh private temp dir and a function that removes it. */
export async function tempDir (prefix: string): Promise<{ path: string, remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `parley-bench-${prefix}-`))
  return { path, remove: async () => { await rm(path, { recursive: true, force: true }) } }
}

/** An ASCII payload of exactly `bytes` bytes that starts with `tag` (unique per message). */
export function payload (tag: string, bytes: number): string {
  if (tag.length >= bytes) return tag.slice(0, bytes)
  return tag + ' ' + 'x'.repeat(bytes - tag.length - 1)
}

/** Reject with a named message if `promise` does not settle within `ms`. */
export async function withTimeout<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new Error(`timed out after ${ms} ms waiting for ${what}`)) }, ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Records the time each key happened and lets a caller wait for a key, whichever comes
 * first (the event may fire before anyone waits for it).
 */
export class Arrivals {
  private readonly seen = new Map<string, number>()
  private readonly waiting = new Map<string, (t: number) => void>()

  record (key: string, t: number): void {
    const w = this.waiting.get(key)
    if (w !== undefined) {
      this.waiting.delete(key)
      w(t)
      return
    }
    this.seen.set(key, t)
  }

  async wait (key: string, timeoutMs: number): Promise<number> {
    const t = this.seen.get(key)
    if (t !== undefined) {
      this.seen.delete(key)
      return t
    }
    const p = new Promise<number>((resolve) => { this.waiting.set(key, resolve) })
    try {
      return await withTimeout(p, timeoutMs, key)
    } finally {
      this.waiting.delete(key)
    }
  }

  clear (): void {
    this.seen.clear()
    this.waiting.clear()
  }
}

/** Resolves once `count()` reaches `target` (checked whenever `poke` is called), or at the deadline. */
export class Countdown {
  private resolve: ((done: boolean) => void) | undefined
  private timer: ReturnType<typeof setTimeout> | undefined
  doneAt: number | undefined

  constructor (private readonly target: number, private readonly count: () => number) {}

  poke (): void {
    if (this.doneAt !== undefined) return
    if (this.count() >= this.target) {
      this.doneAt = now()
      this.finish(true)
    }
  }

  /** true if the target was reached, false if the deadline passed first. */
  async wait (timeoutMs: number): Promise<boolean> {
    if (this.doneAt !== undefined) return true
    return await new Promise<boolean>((resolve) => {
      this.resolve = resolve
      this.timer = setTimeout(() => { this.finish(false) }, timeoutMs)
    })
  }

  private finish (done: boolean): void {
    clearTimeout(this.timer)
    const r = this.resolve
    this.resolve = undefined
    r?.(done)
  }
}
