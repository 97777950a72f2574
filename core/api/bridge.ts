/**
 * ParleyBridge: how a renderer reaches MessengerApi without a WebSocket. The Electron preload
 * exposes one as `window.parley` (contextBridge); the renderer uses it when present and the
 * web shell's WebSocket otherwise. Frames are the same JSON text the WebSocket carries
 * (see contract.ts): a request frame in, its response frame out; every event frame to each
 * listener. Types only: both the preload and the renderer import it.
 *
 * @example
 * const reply = JSON.parse(await window.parley.request(JSON.stringify({ id: 1, cmd: 'whoami' })))
 * const off = window.parley.onEvent((frame) => { console.log(JSON.parse(frame)) })
 * off()
 */
export interface ParleyBridge {
  /** Sends one request frame; resolves with its response frame. */
  request(frame: string): Promise<string>
  /** Calls `listener` with each event frame; returns the function that stops it. */
  onEvent(listener: (frame: string) => void): () => void
}
