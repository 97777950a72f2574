// Types for the part of `ws` (8.x) that Parley uses: the package ships none and @types/ws is
// not a dependency. An ambient declaration wins over node_modules, so if @types/ws is ever
// added, delete this file.
declare module 'ws' {
  import type { EventEmitter } from 'node:events'
  import type { IncomingMessage, ClientRequest } from 'node:http'
  import type { Duplex } from 'node:stream'

  export interface ServerOptions {
    noServer?: boolean
    /** Largest message accepted; a larger one closes the socket with 1009. */
    maxPayload?: number
    perMessageDeflate?: boolean
    clientTracking?: boolean
  }

  export class WebSocketServer extends EventEmitter {
    constructor (options: ServerOptions)
    handleUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer, callback: (ws: WebSocket, req: IncomingMessage) => void): void
    close (callback?: (err?: Error) => void): void
  }

  export interface ClientOptions {
    headers?: Record<string, string>
    origin?: string
    maxPayload?: number
    perMessageDeflate?: boolean
  }

  export class WebSocket extends EventEmitter {
    static readonly CONNECTING: 0
    static readonly OPEN: 1
    static readonly CLOSING: 2
    static readonly CLOSED: 3
    constructor (address: string, protocols?: string | string[], options?: ClientOptions)
    constructor (address: string, options?: ClientOptions)
    readonly readyState: 0 | 1 | 2 | 3
    readonly bufferedAmount: number
    send (data: string | Buffer, callback?: (err?: Error) => void): void
    send (data: string | Buffer, options: { binary?: boolean }, callback?: (err?: Error) => void): void
    close (code?: number, reason?: string): void
    terminate (): void
    on (event: 'message', listener: (data: Buffer, isBinary: boolean) => void): this
    on (event: 'close', listener: (code: number, reason: Buffer) => void): this
    on (event: 'error', listener: (err: Error) => void): this
    on (event: 'open', listener: () => void): this
    on (event: 'unexpected-response', listener: (req: ClientRequest, res: IncomingMessage) => void): this
    once (event: 'message', listener: (data: Buffer, isBinary: boolean) => void): this
    once (event: 'close', listener: (code: number, reason: Buffer) => void): this
    once (event: 'error', listener: (err: Error) => void): this
    once (event: 'open', listener: () => void): this
    once (event: 'unexpected-response', listener: (req: ClientRequest, res: IncomingMessage) => void): this
  }

  export default WebSocket
}
