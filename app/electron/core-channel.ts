import type { ErrorShape } from '../../core/api/contract.js'
import { handleRequest } from '../../core/api/request.js'
import { NotRunningError } from '../../core/errors.js'

/**
 * The messages between the Electron main process and the utility process that hosts core
 * (app/electron/core-host.ts). Renderer frames pass through as the same JSON text the
 * WebSocket carries; key sealing goes the other way, because safeStorage exists only in
 * the main process.
 */
export type ToCore =
  | { type: 'start', options: CoreStartOptions }
  | { type: 'request', seq: number, frame: string }
  /** The answer to a FromCore 'key' message. */
  | { type: 'key-result', seq: number, ok: true, bytes: Uint8Array }
  | { type: 'key-result', seq: number, ok: false, error: string }
  | { type: 'stop' }

export type FromCore =
  | { type: 'started' }
  | { type: 'failed', error: ErrorShape }
  | { type: 'response', seq: number, frame: string }
  | { type: 'event', frame: string }
  /** Core asks the main process to seal or open key bytes with its KeyProtector. */
  | { type: 'key', seq: number, op: 'seal' | 'open', bytes: Uint8Array }
  | { type: 'stopped' }

/** What the utility process needs to start the Messenger (plain data: it crosses processes). */
export interface CoreStartOptions {
  dataDir: string
  listen: string[]
  relays: string[]
  mdns: boolean
  name?: string
  /** The name of the main process's KeyProtector, if the identity key is to be sealed. */
  protector?: string
}

/**
 * One end of a message channel. Electron's utilityProcess, its parentPort and Node's
 * MessagePort each deliver messages their own way; adapters give them this one shape.
 */
export interface Port {
  post(message: ToCore | FromCore): void
  onMessage(listener: (message: unknown) => void): void
}

/** Whether `m` has a string `type` (messages come from another process: checked, not trusted blindly). */
export function isMessage (m: unknown): m is { type: string } & Record<string, unknown> {
  return typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string'
}

/** The response frame to a request core cannot serve now (starting, stopping, exited), with the request's id. */
export async function notRunningResponse (frame: string, why: string): Promise<string> {
  return JSON.stringify(await handleRequest(frame, async () => { throw new NotRunningError(why) }))
}
