// The renderer's only door to the app: window.parley (a ParleyBridge), nothing else. Runs in
// a sandboxed renderer, so it is CommonJS and self-contained: a sandboxed preload can
// require 'electron' but no file of ours. Channel names repeat ipc.ts's (REQUEST_CHANNEL,
// EVENT_CHANNEL); test/unit/electron-preload.test.ts checks they agree.
import { contextBridge, ipcRenderer, type IpcRendererEvent } from 'electron'
import type { ParleyBridge } from '../../core/api/bridge.js'

/** The part of ipcRenderer the bridge uses. */
export interface IpcRendererLike {
  invoke(channel: string, ...args: unknown[]): Promise<unknown>
  on(channel: string, listener: (event: IpcRendererEvent, ...args: unknown[]) => void): unknown
  removeListener(channel: string, listener: (event: IpcRendererEvent, ...args: unknown[]) => void): unknown
}

export const PRELOAD_REQUEST_CHANNEL = 'parley:request'
export const PRELOAD_EVENT_CHANNEL = 'parley:event'

/**
 * A ParleyBridge over ipcRenderer. The page gets plain functions taking and returning strings:
 * never ipcRenderer itself, nor the IPC event (its `sender` would hand the page ipcRenderer).
 */
export function createBridge (ipc: IpcRendererLike): ParleyBridge {
  return Object.freeze({
    async request (frame: string): Promise<string> {
      if (typeof frame !== 'string') throw new TypeError('parley.request takes a JSON string')
      const response = await ipc.invoke(PRELOAD_REQUEST_CHANNEL, frame)
      if (typeof response !== 'string') throw new TypeError('parley.request: the app answered with no frame')
      return response
    },
    onEvent (listener: (frame: string) => void): () => void {
      if (typeof listener !== 'function') throw new TypeError('parley.onEvent takes a function')
      const forward = (_event: IpcRendererEvent, frame: unknown): void => {
        if (typeof frame === 'string') listener(frame)
      }
      ipc.on(PRELOAD_EVENT_CHANNEL, forward)
      let on = true
      return () => {
        if (!on) return
        on = false
        ipc.removeListener(PRELOAD_EVENT_CHANNEL, forward)
      }
    }
  })
}

contextBridge.exposeInMainWorld('parley', createBridge(ipcRenderer))
