import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isMessageId, newMessageId, ulidFactory, ulidTime, type MessageId } from '../../core/ids.js'

function assertStrictlyIncreasing (ids: readonly string[]): void {
  for (let i = 1; i < ids.length; i++) {
    const prev = ids[i - 1] as string
    const cur = ids[i] as string
    if (!(prev < cur)) assert.fail(`id ${i} (${cur}) does not sort after id ${i - 1} (${prev})`)
  }
}

describe('ulidFactory', () => {
  it('makes 100k unique ids in sorted order with the real clock', () => {
    const next = ulidFactory()
    const ids: MessageId[] = []
    for (let i = 0; i < 100_000; i++) ids.push(next())
    assertStrictlyIncreasing(ids)
    assert.equal(new Set(ids).size, ids.length)
    assert.equal(ids.filter((id) => !isMessageId(id)).length, 0, 'every id is a ULID')
  })

  it('stays monotonic with a frozen clock', () => {
    const next = ulidFactory(() => 1_700_000_000_000)
    const ids = Array.from({ length: 100_000 }, () => next())
    assertStrictlyIncreasing(ids)
    for (const id of ids) assert.equal(ulidTime(id), 1_700_000_000_000)
  })

  it('stays monotonic when the clock steps backwards, then resumes from the new time', () => {
    const times = [5000, 4000, 3000, 3000, 0, 4999, 5000, 6000, 1000, 7000]
    let i = 0
    const next = ulidFactory(() => times[i++] as number)
    const ids = times.map(() => next())
    assertStrictlyIncreasing(ids)
    // Time never goes back in the ids: a backwards step reuses the last time.
    assert.deepEqual(ids.map(ulidTime), [5000, 5000, 5000, 5000, 5000, 5000, 5000, 6000, 6000, 7000])
  })

  it('stays monotonic through a long run of a jittery clock', () => {
    let t = 1_000_000
    let calls = 0
    const next = ulidFactory(() => {
      calls++
      t += (calls % 7 === 0) ? -3 : (calls % 3 === 0 ? 1 : 0)
      return t
    })
    assertStrictlyIncreasing(Array.from({ length: 20_000 }, () => next()))
  })

  it('separate factories with the same frozen clock still make distinct ids', () => {
    const a = ulidFactory(() => 42)
    const b = ulidFactory(() => 42)
    const ids = new Set<string>()
    for (let i = 0; i < 1000; i++) {
      ids.add(a())
      ids.add(b())
    }
    assert.equal(ids.size, 2000)
  })

  it('newMessageId is a working default factory', () => {
    const x = newMessageId()
    const y = newMessageId()
    assert.ok(isMessageId(x) && isMessageId(y))
    assert.ok(x < y)
    assert.ok(Math.abs(ulidTime(y) - Date.now()) < 5000)
  })
})

describe('isMessageId', () => {
  it('accepts canonical ULIDs', () => {
    assert.equal(isMessageId('01ARZ3NDEKTSV4RRFFQ69G5FAV'), true)
    assert.equal(isMessageId('00000000000000000000000000'), true)
    assert.equal(isMessageId('7ZZZZZZZZZZZZZZZZZZZZZZZZZ'), true)
    assert.equal(isMessageId(ulidFactory()()), true)
  })

  it('rejects everything else', () => {
    const bad: unknown[] = [
      '',
      '01ARZ3NDEKTSV4RRFFQ69G5FA', // 25 characters
      '01ARZ3NDEKTSV4RRFFQ69G5FAVX', // 27 characters
      '01arz3ndektsv4rrffq69g5fav', // lower case
      '81ARZ3NDEKTSV4RRFFQ69G5FAV', // time overflows 48 bits
      '01ARZ3NDEKTSV4RRFFQ69G5FAI', // I, L, O and U are not Crockford base32
      '01ARZ3NDEKTSV4RRFFQ69G5FAL',
      '01ARZ3NDEKTSV4RRFFQ69G5FAO',
      '01ARZ3NDEKTSV4RRFFQ69G5FAU',
      ' 01ARZ3NDEKTSV4RRFFQ69G5FAV',
      '01ARZ3NDEKTSV4RRFFQ69G5FAV\n',
      '01ARZ3NDEK-SV4RRFFQ69G5FAV',
      undefined,
      null,
      12345,
      ['01ARZ3NDEKTSV4RRFFQ69G5FAV'],
      { id: '01ARZ3NDEKTSV4RRFFQ69G5FAV' }
    ]
    for (const value of bad) assert.equal(isMessageId(value), false, JSON.stringify(value))
  })
})

describe('ulidTime', () => {
  it('decodes known times (ulid reference: encodeTime(1469918176385) is 01ARYZ6S41)', () => {
    assert.equal(ulidTime('01ARYZ6S41TSV4RRFFQ69G5FAV' as MessageId), 1469918176385)
    assert.equal(ulidTime('01ARZ3NDEKTSV4RRFFQ69G5FAV' as MessageId), 1469922850259)
    assert.equal(ulidFactory(() => 1469918176385)().slice(0, 10), '01ARYZ6S41')
  })

  it('round-trips the time a factory was given, across the whole 48-bit range', () => {
    for (const t of [0, 1, 31, 32, 1023, 1024, 1469918176385, Date.now(), 2 ** 40 + 12345, 2 ** 48 - 1]) {
      const id = ulidFactory(() => t)()
      assert.equal(ulidTime(id), t, `time ${t}`)
      assert.ok(isMessageId(id))
    }
    assert.equal(ulidFactory(() => 0)().slice(0, 10), '0000000000')
    assert.equal(ulidFactory(() => 2 ** 48 - 1)().slice(0, 10), '7ZZZZZZZZZ')
  })

  it('orders like the ids themselves', () => {
    const next = ulidFactory()
    const early = ulidFactory(() => 1000)()
    const late = next()
    assert.ok(early < late)
    assert.ok(ulidTime(early) < ulidTime(late))
  })
})
