import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import Module, { createRequire } from 'node:module'
import { describe, it } from 'node:test'
import type { ParleyBridge } from '../../core/api/bridge.js'
import { EVENT_CHANNEL, REQUEST_CHANNEL } from '../../app/electron/ipc.js'

/*
 * The compiled preload (dist/app/electron/preload.cjs) as Electron loads it, with a fake
 * 'electron' module: the real one cannot run here (its binary is not installed, and
 * requiring the package would try to download it). The fake records what the preload hands
 * to contextBridge and plays ipcRenderer.
 */
type Listener = (event: unknown, ...args: unknown[]) => void

class FakeIpcRenderer {
  readonly invoked: Array<{ channel: string, args: unknown[] }> = []
  readonly listeners = new Map<string, Set<Listener>>()
  answer: unknown = '{"id":1,"ok":true,"result":{}}'
  async invoke (channel: string, ...args: unknown[]): Promise<unknown> {
    this.invoked.push({ channel, args })
    return this.answer
  }

  on (channel: string, listener: Listener): this {
    const set = this.listeners.get(channel) ?? new Set()
    set.add(listener)
    this.listeners.set(channel, set)
    return this
  }

  removeListener (channel: string, listener: Listener): this {
    this.listeners.get(channel)?.delete(listener)
    return this
  }

  /** What webContents.send(channel, ...args) does on the page's side. */
  emit (channel: string, ...args: unknown[]): void {
    const event = { sender: this, senderId: 0 }
    for (const l of this.listeners.get(channel) ?? []) l(event, ...args)
  }
}

interface Preload { createBridge: (ipc: FakeIpcRenderer) => ParleyBridge, PRELOAD_REQUEST_CHANNEL: string, PRELOAD_EVENT_CHANNEL: string }

function loadPreload (): { exposed: Array<[string, unknown]>, ipc: FakeIpcRenderer, preload: Preload } {
  const require = createRequire(import.meta.url)
  const exposed: Array<[string, unknown]> = []
  const ipc = new FakeIpcRenderer()
  const electronPath = require.resolve('electron')
  const fake = new Module(electronPath)
  fake.exports = { contextBridge: { exposeInMainWorld: (key: string, api: unknown) => { exposed.push([key, api]) } }, ipcRenderer: ipc }
  fake.loaded = true
  const preloadPath = require.resolve('../../app/electron/preload.cjs')
  require.cache[electronPath] = fake
  delete require.cache[preloadPath]
  try {
    return { exposed, ipc, preload: require(preloadPath) as Preload }
  } finally {
    delete require.cache[electronPath]
    delete require.cache[preloadPath]
  }
}

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
    const { preload } = loadPreload()
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
