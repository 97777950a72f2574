import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { realpath, stat } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { extname, join, sep } from 'node:path'
import type { Duplex } from 'node:stream'
import { WebSocket, WebSocketServer } from 'ws'
import type { MessengerEvent, Response } from '../../core/api/contract.js'
import type { Dispatch } from '../../core/api/dispatcher.js'
import { handleRequest } from '../../core/api/request.js'
import { describeError, InvalidRequestError } from '../../core/errors.js'
import { forComponent } from '../../core/logger.js'

const log = forComponent('web-shell')

/** Where the WebSocket carrying MessengerApi is. */
export const API_PATH = '/api'
/**
 * Largest WebSocket message read at all: a larger one closes the socket (1009). Messages
 * up to this size but over MAX_REQUEST_BYTES (1 MiB) get an InvalidRequestError and the socket
 * stays open.
 */
export const MAX_FRAME_BYTES = 4 * 1024 * 1024
/** A client that lets this much pile up unread (events, responses) is disconnected. */
export const MAX_BUFFERED_BYTES = 16 * 1024 * 1024
/** How long stop() waits for sockets to close before cutting them. */
const CLOSE_GRACE_MS = 2000

/** The part of MessengerApi the server needs: a dispatcher and the event stream. */
export interface WebShellApi {
  dispatch: Dispatch
  on: (listener: (event: MessengerEvent) => void) => () => void
}

export interface WebShellOptions {
  /** Directory of the renderer's files, served at `/`. */
  staticDir: string
  /** TCP port on 127.0.0.1; 0 (the default) picks a free one. */
  port?: number
  /** The access token; a fresh random one (32 bytes, base64url) if not given. */
  token?: string
}

/** The server could not listen (port taken, not allowed). */
export class WebShellListenError extends Error {
  static override name = 'WebShellListenError'
  override name = 'WebShellListenError'
}

/** Content-Type by file extension, for the renderer's files (also served by the Electron app protocol). */
export const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.wasm': 'application/wasm'
}

/**
 * The web shell's server: the renderer's static files and MessengerApi over a WebSocket at
 * `/api`, on 127.0.0.1 only. Each text frame is one request (`{"id","cmd",...params}`) and
 * gets one response frame; every event is pushed as a frame: the shapes of the JSON lines.
 *
 * Access: the WebSocket upgrade must carry the per-launch token as `?token=`; an upgrade
 * without it, with another token, with an Origin other than this server's own or a Host other
 * than 127.0.0.1:<port> is refused with 401 before anything is dispatched. Static files need
 * no token and contain none: the page reads it from the URL fragment (`url`).
 *
 * @example
 * const web = new WebShellServer({ dispatch: createDispatcher(m), on: (l) => m.on(l) }, { staticDir })
 * await web.start()
 * console.log(web.url) // http://127.0.0.1:41234/#token=...
 * await web.stop()
 */
export class WebShellServer {
  readonly token: string
  private readonly tokenDigest: Buffer
  private readonly http: Server
  private readonly wss: WebSocketServer
  private readonly sockets = new Set<WebSocket>()
  private readonly inflight = new Set<Promise<void>>()
  private listeningPort = 0
  private stopping: Promise<void> | undefined

  constructor (private readonly api: WebShellApi, private readonly options: WebShellOptions) {
    this.token = options.token ?? randomBytes(32).toString('base64url')
    this.tokenDigest = sha256(this.token)
    this.wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false, clientTracking: false })
    this.http = createServer((req, res) => { void this.serveStatic(req, res) })
    this.http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => { this.onUpgrade(req, socket, head) })
  }

  get port (): number {
    return this.listeningPort
  }

  /** This server's own origin, the only one allowed to open the WebSocket. */
  get origin (): string {
    return `http://127.0.0.1:${this.listeningPort}`
  }

  /** What to open in a browser: the token is in the fragment, which browsers never send. */
  get url (): string {
    return `${this.origin}/#token=${this.token}`
  }

  /** The WebSocket address with the token (for clients other than the page). */
  get apiUrl (): string {
    return `ws://127.0.0.1:${this.listeningPort}${API_PATH}?token=${this.token}`
  }

  /** Open sockets. */
  get clients (): number {
    return this.sockets.size
  }

  async start (): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => { reject(new WebShellListenError(`cannot listen on 127.0.0.1:${this.options.port ?? 0}: ${err.message}`)) }
      this.http.once('error', onError)
      this.http.listen(this.options.port ?? 0, '127.0.0.1', () => {
        this.http.off('error', onError)
        this.listeningPort = (this.http.address() as AddressInfo).port
        resolve()
      })
    })
    this.http.on('error', (err) => { log.error('http server error: %e', err) })
  }

  /** Closes every socket (1001) and the listener, after answering requests still running. */
  async stop (): Promise<void> {
    this.stopping ??= this.doStop()
    await this.stopping
  }

  private async doStop (): Promise<void> {
    const closed = new Promise<void>((resolve) => { this.http.close(() => { resolve() }) })
    this.http.closeIdleConnections()
    await Promise.all(this.inflight)
    const sockets = [...this.sockets]
    await Promise.all(sockets.map(async (ws) => await closeSocket(ws)))
    this.wss.close()
    this.http.closeAllConnections()
    await closed
  }

  private onUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => {}) // a client that vanishes mid-handshake
    if (this.stopping !== undefined) { refuseUpgrade(socket, 503, 'stopping'); return }
    let url: URL
    try {
      url = new URL(req.url ?? '', 'http://127.0.0.1')
    } catch {
      refuseUpgrade(socket, 400, 'bad request target')
      return
    }
    if (url.pathname !== API_PATH) { refuseUpgrade(socket, 404, 'not found'); return }
    const refusal = this.authorise(req, url)
    if (refusal !== undefined) {
      log('refused a WebSocket upgrade: %s', refusal)
      refuseUpgrade(socket, 401, refusal)
      return
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => { this.onConnection(ws) })
  }

  /** Why this upgrade may not open the API, or undefined if it may. */
  private authorise (req: IncomingMessage, url: URL): string | undefined {
    if (req.headers.host !== `127.0.0.1:${this.listeningPort}`) return 'wrong Host'
    const origin = req.headers.origin
    if (origin !== undefined && origin !== this.origin) return 'foreign Origin'
    const token = url.searchParams.get('token')
    if (token === null) return 'no token'
    // Compare digests: equal lengths for timingSafeEqual, and nothing learned from timing.
    if (!timingSafeEqual(sha256(token), this.tokenDigest)) return 'wrong token'
    return undefined
  }

  private onConnection (ws: WebSocket): void {
    if (this.stopping !== undefined) { ws.terminate(); return }
    this.sockets.add(ws)
    const off = this.api.on((event) => { this.send(ws, event) })
    ws.on('message', (data, isBinary) => {
      if (this.stopping !== undefined) return // the socket is about to close (1001); the node is stopping
      const p = (isBinary ? Promise.resolve(refusal('requests are JSON in text frames, not binary')) : handleRequest(data.toString('utf8'), this.api.dispatch))
        .then((response) => { this.send(ws, response) })
      this.inflight.add(p)
      void p.finally(() => this.inflight.delete(p))
    })
    ws.on('error', (err) => { log('socket error: %s', err.message) }) // ws closes the socket itself
    ws.on('close', () => {
      off()
      this.sockets.delete(ws)
    })
  }

  private send (ws: WebSocket, frame: Response | MessengerEvent): void {
    if (ws.readyState !== WebSocket.OPEN) return
    if (ws.bufferedAmount > MAX_BUFFERED_BYTES) {
      log('a client is not reading (%d bytes waiting): disconnecting it', ws.bufferedAmount)
      ws.terminate()
      return
    }
    ws.send(JSON.stringify(frame))
  }

  private async serveStatic (req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.setHeader('X-Content-Type-Options', 'nosniff')
    res.setHeader('Cache-Control', 'no-store')
    res.setHeader('Referrer-Policy', 'no-referrer')
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD')
      plain(res, 405, 'method not allowed')
      return
    }
    if (req.headers.host !== `127.0.0.1:${this.listeningPort}`) { plain(res, 400, 'wrong Host'); return }
    const target = staticTarget(req.url ?? '')
    if (typeof target === 'number') { plain(res, target, target === 404 ? 'not found' : 'bad path'); return }
    try {
      const root = await realpath(this.options.staticDir)
      const file = await realpath(join(root, ...target)).catch(() => undefined)
      // realpath resolves symlinks too: whatever it names must still be inside the root.
      if (file === undefined || !file.startsWith(root + sep)) { plain(res, 404, 'not found'); return }
      const st = await stat(file)
      if (!st.isFile()) { plain(res, 404, 'not found'); return }
      res.setHeader('Content-Type', CONTENT_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream')
      res.setHeader('Content-Length', st.size)
      if (file.endsWith('.html')) {
        res.setHeader('Content-Security-Policy', `default-src 'self'; connect-src 'self' ws://127.0.0.1:${this.listeningPort}; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`)
        res.setHeader('X-Frame-Options', 'DENY')
      }
      if (req.method === 'HEAD') { res.end(); return }
      const stream = createReadStream(file)
      stream.on('error', (err) => { log.error('reading %s: %e', file, err); res.destroy() })
      stream.pipe(res)
    } catch (err) {
      log.error('serving %s: %e', req.url, err)
      if (!res.headersSent) plain(res, 500, 'internal error')
      else res.destroy()
    }
  }
}

/**
 * The path segments a request target names under the static root, or the status refusing
 * it: 400 for anything that could climb out (`..`, `.`, encoded `/` or `\`, NUL, bad
 * percent-encoding, not origin-form), 404 for hidden files. A trailing `/` means index.html.
 */
export function staticTarget (rawUrl: string): string[] | 400 | 404 {
  const q = rawUrl.search(/[?#]/)
  const path = q === -1 ? rawUrl : rawUrl.slice(0, q)
  if (!path.startsWith('/')) return 400
  const segments: string[] = []
  const raw = path.split('/').slice(1)
  for (const [i, part] of raw.entries()) {
    let seg: string
    try {
      seg = decodeURIComponent(part)
    } catch {
      return 400
    }
    if (seg === '..' || seg === '.' || /[/\\\0]/.test(seg)) return 400
    if (seg === '') {
      if (i === raw.length - 1) segments.push('index.html')
      continue
    }
    if (seg.startsWith('.')) return 404
    segments.push(seg)
  }
  return segments
}

function refusal (message: string): Response {
  return { id: null, ok: false, error: describeError(new InvalidRequestError(message)) }
}

function sha256 (s: string): Buffer {
  return createHash('sha256').update(s).digest()
}

function plain (res: ServerResponse, status: number, body: string): void {
  res.statusCode = status
  res.setHeader('Content-Type', 'text/plain; charset=utf-8')
  res.setHeader('Content-Length', Buffer.byteLength(body))
  res.end(body)
}

/** Answers an upgrade we will not accept with a plain HTTP response and closes the socket. */
function refuseUpgrade (socket: Duplex, status: number, reason: string): void {
  const text = { 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 503: 'Service Unavailable' }[status] ?? 'Error'
  const response = `HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(reason)}\r\n\r\n${reason}`
  socket.end(response, () => { socket.destroy() })
}

async function closeSocket (ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => { ws.terminate(); resolve() }, CLOSE_GRACE_MS)
    ws.once('close', () => { clearTimeout(timer); resolve() })
    ws.close(1001, 'server stopping')
  })
}
