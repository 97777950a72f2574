import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { KeyedLimiter } from '../../core/limiter.js'

describe('KeyedLimiter', () => {
  it('runs at most `limit` tasks at once per key, the rest in the order they came', async () => {
    const limiter = new KeyedLimiter(3)
    let running = 0
    let most = 0
    const started: number[] = []
    const tasks = Array.from({ length: 20 }, async (_, i) => await limiter.run('relay-a', async () => {
      started.push(i)
      running++
      most = Math.max(most, running)
      await new Promise((resolve) => setTimeout(resolve, 1 + (i % 4)))
      running--
      return i * 2
    }))
    assert.deepEqual(await Promise.all(tasks), Array.from({ length: 20 }, (_, i) => i * 2))
    assert.equal(most, 3)
    assert.deepEqual(started, Array.from({ length: 20 }, (_, i) => i), 'queued tasks start in order')
    assert.equal(limiter.active('relay-a'), 0)
  })

  it('keeps keys apart, and a failing task frees its place', async () => {
    const limiter = new KeyedLimiter(1)
    let release: () => void = () => {}
    const blocker = limiter.run('a', async () => { await new Promise<void>((resolve) => { release = resolve }) })
    // Another key is not held up by 'a'.
    assert.equal(await limiter.run('b', async () => 'b done'), 'b done')
    const failing = limiter.run('a', async () => { throw new Error('boom') })
    const after = limiter.run('a', async () => 'after')
    assert.equal(limiter.active('a'), 1)
    release()
    await blocker
    await assert.rejects(failing, /boom/)
    assert.equal(await after, 'after')
    assert.equal(limiter.active('a'), 0)
  })

  it('refuses a limit that is not a positive integer', () => {
    assert.throws(() => new KeyedLimiter(0), RangeError)
    assert.throws(() => new KeyedLimiter(1.5), RangeError)
  })
})
