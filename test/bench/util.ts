import { performance } from 'node:perf_hooks'
import { hrtime } from 'node:process'

/** Process-local monotonic time in ms (durations measured inside one process). */
export const now = (): number => performance.now()

/**
 * Time in ms on a clock that every process on this machine shares: the system's monotonic
 * clock (`process.hrtime`, CLOCK_MONOTONIC on Linux, since boot), read the same in every
 * process, so a timestamp taken in one process can be subtracted from one taken in another.
 * Not `performance.timeOrigin + performance.now()`: Node samples a process's timeOrigin from
 * the wall clock and its performance.now() base from the monotonic clock at different moments
 * of start-up, so processes started on a busy machine disagreed by up to 16 ms (the group
 * bench's five member processes, started one after another, were 6, 10, 15, 18 and 22 ms
 * ahead of the harness). clock.ts checks the residual offset between processes over IPC.
 */
export const sharedNow = (): number => Number(hrtime.bigint()) / 1e6

/** The tag of a payload() text: everything before the first space. */
export function tagOf (text: string): string {
  const i = text.indexOf(' ')
  return i < 0 ? text : text.slice(0, i)
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

/**
 * Resolves once `count()` reaches `target` (checked whenever `poke` is called), or at the
 * deadline. `doneAt` is on the shared clock (sharedNow).
 */
export class Countdown {
  private resolve: ((done: boolean) => void) | undefined
  private timer: ReturnType<typeof setTimeout> | undefined
  doneAt: number | undefined

  constructor (private readonly target: number, private readonly count: () => number) {}

  poke (): void {
    if (this.doneAt !== undefined) return
    if (this.count() >= this.target) {
      this.doneAt = sharedNow()
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
