import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Gate } from '../../core/gate.js'
import { NotRunningError } from '../../core/errors.js'

describe('Gate', () => {
  it('holds work until it opens, then runs it; refuses work once closed, and close waits for the work inside', async () => {
    const gate = new Gate(() => new NotRunningError('closed'))
    const order: string[] = []
    const early = gate.run(async () => { order.push('early ran'); return 1 })
    await new Promise((resolve) => setTimeout(resolve, 20))
    assert.equal(order.length, 0, 'nothing runs before open')
    gate.open()
    assert.equal(await early, 1)
    let finish = (): void => {}
    const slow = gate.run(async () => {
      await new Promise<void>((resolve) => { finish = resolve })
      order.push('slow finished')
    })
    await new Promise((resolve) => setTimeout(resolve, 5))
    const closed = gate.close().then(() => { order.push('closed') })
    await assert.rejects(gate.run(async () => { order.push('late ran') }), NotRunningError)
    finish()
    await Promise.all([slow, closed])
    assert.deepEqual(order, ['early ran', 'slow finished', 'closed'], 'close waited for the work inside; the late work never ran')
  })

  it('work waiting when the gate closes unopened is refused, not run', async () => {
    const gate = new Gate(() => new NotRunningError('closed'))
    let ran = false
    const waiting = gate.run(async () => { ran = true })
    await gate.close()
    await assert.rejects(waiting, NotRunningError)
    gate.open()
    await assert.rejects(gate.run(async () => { ran = true }), NotRunningError, 'opening after close does nothing')
    assert.equal(ran, false)
  })
})
