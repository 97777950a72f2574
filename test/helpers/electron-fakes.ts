import assert from 'node:assert/strict'
import Module, { createRequire } from 'node:module'
import type { ParleyBridge } from '../../core/api/bridge.js'
import type { Response } from '../../core/api/contract.js'
import { EVENT_CHANNEL, REQUEST_CHANNEL, type InvokeEventLike, type IpcMainLike, type WebContentsLike } from '../../app/electron/ipc.js'
import { RENDERER_URL } from '../../app/electron/security.js'

/*
 * Small fakes of Electron's ipcMain, webContents and ipcRenderer, with the shapes the app's
 * modules take. The Electron binary cannot be installed here (no network to fetch it, and
 * requiring the electron package would try to download it), so the tests run the app's own
 * wiring, preload and core host against these.
 */
type Handler = (event: InvokeEventLike, ...args: unknown[]) => Promise<unknown>

export class FakeIpcMain implements IpcMainLike {
  readonly handlers = new Map<string, Handler>()
  handle (channel: string, listener: Handler): void {
    if (this.handlers.has(channel)) throw new Error(`second handler for ${channel}`) // as Electron does
    this.handlers.set(channel, listener)
  }

  removeHandler (channel: string): void {
    this.handlers.delete(channel)
  }

  /** What ipcRenderer.invoke(channel, ...args) does from the frame `event` describes. */
  async invoke (channel: string, event: InvokeEventLike, ...args: unknown[]): Promise<unknown> {
    const handler = this.handlers.get(channel)
    if (handler === undefined) throw new Error(`No handler registered for '${channel}'`)
    return await handler(event, ...args)
  }
}

export class FakeWebContents implements WebContentsLike {
  readonly sent: Array<{ channel: string, args: unknown[] }> = []
  destroyed = false
  /** Called on every send, as the page's ipcRenderer would receive it. */
  onSend: ((channel: string, ...args: unknown[]) => void) | undefined
  constructor (readonly id: number) {}
  isDestroyed (): boolean { return this.destroyed }
  send (channel: string, ...args: unknown[]): void {
    this.sent.push({ channel, args })
    this.onSend?.(channel, ...args)
  }

  /** The event frames sent so far, parsed. */
  frames (): Array<Record<string, unknown>> {
    return this.sent.filter((s) => s.channel === EVENT_CHANNEL).map((s) => JSON.parse(s.args[0] as string) as Record<string, unknown>)
  }
}

/** An invoke from our window's top frame showing the renderer. */
export function fromRenderer (wc: WebContentsLike, url = RENDERER_URL): InvokeEventLike {
  return { sender: { id: wc.id }, senderFrame: { url, parent: null } }
}

/** Invoke REQUEST_CHANNEL from the renderer with `frame`; the response frame, parsed. */
export async function askIpc (ipc: FakeIpcMain, event: InvokeEventLike, frame: unknown): Promise<Response> {
  const text = await ipc.invoke(REQUEST_CHANNEL, event, frame)
  assert.equal(typeof text, 'string', 'responses are JSON text, as on the WebSocket')
  return JSON.parse(text as string) as Response
}

type Listener = (event: unknown, ...args: unknown[]) => void

/** ipcRenderer: records invokes and answers them with `answer`, unless `connect`ed to a FakeIpcMain. */
export class FakeIpcRenderer {
  readonly invoked: Array<{ channel: string, args: unknown[] }> = []
  readonly listeners = new Map<string, Set<Listener>>()
  answer: unknown = '{"id":1,"ok":true,"result":{}}'
  private main: { ipc: FakeIpcMain, page: FakeWebContents } | undefined

  /** Route invokes to `ipc` as our window's page, and what `page` is sent to this renderer. */
  connect (ipc: FakeIpcMain, page: FakeWebContents): void {
    this.main = { ipc, page }
    page.onSend = (channel, ...args) => { this.emit(channel, ...args) }
  }

  async invoke (channel: string, ...args: unknown[]): Promise<unknown> {
    this.invoked.push({ channel, args })
    if (this.main !== undefined) return await this.main.ipc.invoke(channel, fromRenderer(this.main.page), ...args)
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

export interface LoadedPreload {
  /** What the preload passed to contextBridge.exposeInMainWorld, in order. */
  exposed: Array<[string, unknown]>
  ipc: FakeIpcRenderer
  exports: { createBridge: (ipc: FakeIpcRenderer) => ParleyBridge, PRELOAD_REQUEST_CHANNEL: string, PRELOAD_EVENT_CHANNEL: string }
}

/** Runs the compiled preload (dist/app/electron/preload.cjs) with a fake 'electron' module. */
export function loadPreload (ipc = new FakeIpcRenderer()): LoadedPreload {
  const require = createRequire(import.meta.url)
  const exposed: Array<[string, unknown]> = []
  const electronPath = require.resolve('electron')
  const fake = new Module(electronPath)
  fake.exports = { contextBridge: { exposeInMainWorld: (key: string, api: unknown) => { exposed.push([key, api]) } }, ipcRenderer: ipc }
  fake.loaded = true
  const preloadPath = require.resolve('../../app/electron/preload.cjs')
  require.cache[electronPath] = fake
  delete require.cache[preloadPath]
  try {
    return { exposed, ipc, exports: require(preloadPath) as LoadedPreload['exports'] }
  } finally {
    delete require.cache[electronPath]
    delete require.cache[preloadPath]
  }
}
