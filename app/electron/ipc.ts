import type { ParleyBridge } from '../../core/api/bridge.js'
import type { Response } from '../../core/api/contract.js'
import { oversizeRequest } from '../../core/api/request.js'
import { describeError, InvalidRequestError } from '../../core/errors.js'
import { forComponent } from '../../core/logger.js'

const log = forComponent('electron:ipc')

/** ipcRenderer.invoke channel: a request frame (JSON text) in, its response frame out. */
export const REQUEST_CHANNEL = 'parley:request'
/** webContents.send channel: one event frame (JSON text) per MessengerEvent. */
export const EVENT_CHANNEL = 'parley:event'

/** The part of Electron's IpcMainInvokeEvent the wiring reads. */
export interface InvokeEventLike {
  sender: { readonly id: number }
  /** The frame that called; null once it navigated away or was destroyed. */
  readonly senderFrame: { readonly url: string, readonly parent: unknown } | null
}

/** The part of Electron's ipcMain the wiring uses. */
export interface IpcMainLike {
  handle(channel: string, listener: (event: InvokeEventLike, ...args: unknown[]) => Promise<unknown>): void
  removeHandler(channel: string): void
}

/** The part of Electron's WebContents the wiring uses: the window's page. */
export interface WebContentsLike {
  readonly id: number
  isDestroyed(): boolean
  send(channel: string, ...args: unknown[]): void
}

export interface IpcWiringOptions {
  ipcMain: IpcMainLike
  /** The only page allowed to call: our window's webContents. */
  webContents: WebContentsLike
  /** Whether a frame URL is our renderer (see isRendererUrl in security.ts). */
  isTrustedUrl: (url: string) => boolean
  /**
   * Core in its wire form: CoreClient (core in the utility process) in the app,
   * localBackend(messenger) (the shared dispatcher in this process) in tests.
   */
  backend: ParleyBridge
}

/** An invoke from a page or frame other than our renderer's top frame: refused unanswered. */
export class ForbiddenSenderError extends Error {
  static override name = 'ForbiddenSenderError'
  override name = 'ForbiddenSenderError'
}

/**
 * Carries MessengerApi between the renderer and core over Electron IPC: the same frames as
 * the WebSocket (core/api/request.ts) through `ipcMain.handle(REQUEST_CHANNEL)` and every
 * event frame on EVENT_CHANNEL. Only our window's top frame, showing our renderer URL, may
 * call; anything else is refused with ForbiddenSenderError and nothing reaches core. A frame
 * that is not a string, or is over MAX_REQUEST_BYTES, gets an InvalidRequestError response
 * here, before it is copied to the core process; the rest is core's (handleRequest). Returns
 * the function that unwires it (before core stops).
 *
 * @example
 * const unwire = wireIpc({ ipcMain, webContents: win.webContents, isTrustedUrl: isRendererUrl, backend: core })
 */
export function wireIpc (options: IpcWiringOptions): () => void {
  const { ipcMain, webContents, isTrustedUrl, backend } = options
  let closed = false
  ipcMain.handle(REQUEST_CHANNEL, async (event, frame) => {
    const refusal = senderRefusal(event, webContents, isTrustedUrl)
    if (refusal !== undefined) {
      log('refused an IPC request: %s', refusal)
      throw new ForbiddenSenderError(refusal)
    }
    if (typeof frame !== 'string') return JSON.stringify(errorResponse(new InvalidRequestError('requests are JSON text')))
    const tooLarge = oversizeRequest(frame)
    if (tooLarge !== undefined) return JSON.stringify(errorResponse(tooLarge))
    return await backend.request(frame)
  })
  const off = backend.onEvent((frame) => {
    if (closed || webContents.isDestroyed()) return
    webContents.send(EVENT_CHANNEL, frame)
  })
  return () => {
    if (closed) return
    closed = true
    off()
    ipcMain.removeHandler(REQUEST_CHANNEL)
  }
}

/** Why this invoke may not be served, or undefined if it may. */
function senderRefusal (event: InvokeEventLike, webContents: WebContentsLike, isTrustedUrl: (url: string) => boolean): string | undefined {
  if (webContents.isDestroyed() || event.sender.id !== webContents.id) return 'not our window'
  const frame = event.senderFrame
  if (frame === null) return 'the calling frame is gone'
  if (frame.parent !== null) return 'a subframe'
  if (!isTrustedUrl(frame.url)) return 'not our renderer URL'
  return undefined
}

function errorResponse (err: Error): Response {
  return { id: null, ok: false, error: describeError(err) }
}
