/**
 * The renderer's one way to its node: MessengerApi frames over the Electron preload's bridge
 * (`window.parley`) when there is one, else over the web shell's WebSocket (`/api?token=`,
 * the token read from the page's `#token=` fragment). The socket is reopened with backoff
 * when it drops; listeners see the connection state so the UI can say it is disconnected.
 */
import type { CommandName, CommandParams, CommandResult, ErrorShape, MessengerEvent } from '../../../core/api/contract.js'
import type { ParleyBridge } from '../../../core/api/bridge.js'

declare global {
  interface Window { parley?: ParleyBridge }
}

export type ConnectionState =
  | { kind: 'connecting' }
  | { kind: 'open' }
  /** Dropped (or never opened); the next try is at `retryAt` (ms since epoch). */
  | { kind: 'closed', retryAt: number, reason: string }

/** A command the node answered with an error (`name` as in core/errors.ts). */
export class ApiError extends Error {
  constructor (readonly shape: ErrorShape) {
    super(shape.message)
    this.name = shape.name
  }
}

/** The socket closed before the answer came. */
export class DisconnectedError extends Error {
  override name = 'DisconnectedError'
}

type ResponseFrame = { id: number, ok: true, result: unknown } | { id: number, ok: false, error: ErrorShape }

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000] as const
const REQUEST_TIMEOUT_MS = 60_000

const TOKEN_KEY = 'parley.token'

/**
 * The web shell's token: from the URL's `#token=` (then kept in sessionStorage and taken out
 * of the address bar, so it is not in bookmarks, screenshots or a shared URL), or from
 * sessionStorage after a reload of this tab.
 */
function pageToken (): string | undefined {
  const fromHash = tokenFromHash(window.location.hash)
  if (fromHash === undefined) return sessionStorage.getItem(TOKEN_KEY) ?? undefined
  sessionStorage.setItem(TOKEN_KEY, fromHash)
  window.history.replaceState(null, '', window.location.pathname + window.location.search)
  return fromHash
}

/** Reads `#token=...` (other fragment parameters are ignored). */
export function tokenFromHash (hash: string): string | undefined {
  const params = new URLSearchParams(hash.replace(/^#/, ''))
  return params.get('token') ?? undefined
}

/**
 * A MessengerApi client.
 *
 * @example
 * const client = ParleyClient.forPage()
 * client.onEvent((e) => { if (e.event === 'message') show(e) })
 * const me = await client.call('whoami', {})
 */
export class ParleyClient {
  private nextId = 1
  private readonly pending = new Map<number, { resolve: (r: unknown) => void, reject: (e: Error) => void, timer: number }>()
  private readonly eventListeners = new Set<(e: MessengerEvent) => void>()
  private readonly stateListeners = new Set<(s: ConnectionState) => void>()
  private ws: WebSocket | undefined
  private attempt = 0
  private retryTimer: number | undefined
  private stateValue: ConnectionState = { kind: 'connecting' }

  private constructor (private readonly bridge: ParleyBridge | undefined, private readonly wsUrl: string | undefined) {}

  /** The bridge if the page runs in the desktop app, else the WebSocket of the page's own origin. */
  static forPage (): ParleyClient {
    if (window.parley !== undefined) return new ParleyClient(window.parley, undefined)
    const token = pageToken()
    const proto = window.location.protocol === 'https:' ? 'wss:' : 'ws:'
    const url = token === undefined ? undefined : `${proto}//${window.location.host}/api?token=${encodeURIComponent(token)}`
    return new ParleyClient(undefined, url)
  }

  get state (): ConnectionState {
    return this.stateValue
  }

  /** Opens the connection (and keeps reopening it). */
  start (): void {
    if (this.bridge !== undefined) {
      this.bridge.onEvent((frame) => { this.onFrame(frame) })
      this.setState({ kind: 'open' })
      return
    }
    this.connect()
  }

  /** Tries again now instead of waiting for the backoff. */
  retryNow (): void {
    if (this.bridge !== undefined || this.stateValue.kind !== 'closed') return
    window.clearTimeout(this.retryTimer)
    this.connect()
  }

  onEvent (listener: (e: MessengerEvent) => void): () => void {
    this.eventListeners.add(listener)
    return () => { this.eventListeners.delete(listener) }
  }

  onState (listener: (s: ConnectionState) => void): () => void {
    this.stateListeners.add(listener)
    return () => { this.stateListeners.delete(listener) }
  }

  /** Runs one command; rejects with ApiError (the node refused) or DisconnectedError. */
  async call<C extends CommandName> (cmd: C, params: CommandParams<C>): Promise<CommandResult<C>> {
    const id = this.nextId++
    const frame = JSON.stringify({ ...params, id, cmd })
    if (this.bridge !== undefined) {
      return parseResponse(await this.bridge.request(frame)) as CommandResult<C>
    }
    const ws = this.ws
    if (ws === undefined || ws.readyState !== WebSocket.OPEN) throw new DisconnectedError('not connected to your node')
    return await new Promise<CommandResult<C>>((resolve, reject) => {
      const timer = window.setTimeout(() => {
        this.pending.delete(id)
        reject(new DisconnectedError(`${cmd}: no answer from your node`))
      }, REQUEST_TIMEOUT_MS)
      this.pending.set(id, { resolve: (r) => { resolve(r as CommandResult<C>) }, reject, timer })
      ws.send(frame)
    })
  }

  private connect (): void {
    if (this.wsUrl === undefined) {
      this.setState({ kind: 'closed', retryAt: Number.POSITIVE_INFINITY, reason: 'This page has no access token: open the address `parley web` printed.' })
      return
    }
    this.setState({ kind: 'connecting' })
    const ws = new WebSocket(this.wsUrl)
    this.ws = ws
    ws.addEventListener('open', () => {
      this.attempt = 0
      this.setState({ kind: 'open' })
    })
    ws.addEventListener('message', (e: MessageEvent) => {
      if (typeof e.data === 'string') this.onFrame(e.data)
    })
    ws.addEventListener('close', () => {
      if (this.ws !== ws) return
      this.ws = undefined
      for (const p of this.pending.values()) {
        window.clearTimeout(p.timer)
        p.reject(new DisconnectedError('disconnected from your node'))
      }
      this.pending.clear()
      const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)] ?? 8000
      this.attempt++
      // A restarted `parley web` has a new token: this page's one will never work again.
      const reason = this.attempt > 3 ? 'Your node cannot be reached. If it was restarted, open the new address it printed.' : 'The connection to your node dropped.'
      this.setState({ kind: 'closed', retryAt: Date.now() + delay, reason })
      this.retryTimer = window.setTimeout(() => { this.connect() }, delay)
    })
  }

  private onFrame (text: string): void {
    let frame: unknown
    try {
      frame = JSON.parse(text)
    } catch {
      return // the node only sends JSON; anything else is not ours to act on
    }
    if (typeof frame !== 'object' || frame === null) return
    if ('event' in frame) {
      for (const l of this.eventListeners) l(frame as MessengerEvent)
      return
    }
    const r = frame as ResponseFrame
    const p = this.pending.get(r.id)
    if (p === undefined) return
    this.pending.delete(r.id)
    window.clearTimeout(p.timer)
    if (r.ok) p.resolve(r.result)
    else p.reject(new ApiError(r.error))
  }

  private setState (s: ConnectionState): void {
    this.stateValue = s
    for (const l of this.stateListeners) l(s)
  }
}

function parseResponse (text: string): unknown {
  const r = JSON.parse(text) as ResponseFrame
  if (!r.ok) throw new ApiError(r.error)
  return r.result
}
