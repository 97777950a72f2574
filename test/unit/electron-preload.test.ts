import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { ParleyBridge } from '../../core/api/bridge.js'
import { EVENT_CHANNEL, REQUEST_CHANNEL } from '../../app/electron/ipc.js'
import { loadPreload } from '../helpers/electron-fakes.js'

// The compiled preload (dist/app/electron/preload.cjs) as Electron loads it, with a fake
// 'electron' module (test/helpers/electron-fakes.ts: the real one cannot run here). The fake
// records what the preload hands to contextBridge and plays ipcRenderer.

void describe('Electron preload', () => {
  void it('exposes exactly one thing to the page: window.parley with request and onEvent, frozen', () => {
    const { exposed } = loadPreload()
    assert.equal(exposed.length, 1)
    const [key, api] = exposed[0] as [string, ParleyBridge]
    assert.equal(key, 'parley')
    assert.deepEqual(Object.keys(api).sort(), ['onEvent', 'request'])
    assert.ok(Object.isFrozen(api))
  })

  void it('uses the channels the main process handles', () => {
    const { exports: preload } = loadPreload()
    assert.equal(preload.PRELOAD_REQUEST_CHANNEL, REQUEST_CHANNEL)
    assert.equal(preload.PRELOAD_EVENT_CHANNEL, EVENT_CHANNEL)
  })

  void it('request: passes the frame text to ipcRenderer.invoke and resolves with the response text', async () => {
    const { exposed, ipc } = loadPreload()
    const parley = exposed[0]?.[1] as ParleyBridge
    assert.equal(await parley.request('{"id":1,"cmd":"whoami"}'), ipc.answer)
    assert.deepEqual(ipc.invoked, [{ channel: REQUEST_CHANNEL, args: ['{"id":1,"cmd":"whoami"}'] }])

    await assert.rejects(parley.request({ id: 1 } as unknown as string), TypeError)
    assert.equal(ipc.invoked.length, 1, 'a non-string never reaches the main process')
    ipc.answer = { not: 'a frame' }
    await assert.rejects(parley.request('{"id":2,"cmd":"whoami"}'), TypeError)
  })

  void it('onEvent: hands the listener event frames only (never the IPC event), and stops once unsubscribed', () => {
    const { exposed, ipc } = loadPreload()
    const parley = exposed[0]?.[1] as ParleyBridge
    const got: unknown[][] = []
    const off = parley.onEvent((...args: unknown[]) => { got.push(args) })
    ipc.emit(EVENT_CHANNEL, '{"event":"peer","peerId":"x","connected":true}')
    ipc.emit(EVENT_CHANNEL, { event: 'not text' })
    ipc.emit('other:channel', '{"event":"elsewhere"}')
    assert.deepEqual(got, [['{"event":"peer","peerId":"x","connected":true}']])
    off()
    off()
    ipc.emit(EVENT_CHANNEL, '{"event":"after"}')
    assert.equal(got.length, 1)
    assert.equal(ipc.listeners.get(EVENT_CHANNEL)?.size, 0)
    assert.throws(() => parley.onEvent('nope' as unknown as (f: string) => void), TypeError)
  })
})
