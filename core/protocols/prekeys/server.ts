import type { Connection, Startable, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import { InvalidRequestError, ParleyError } from '../../errors.js'
import { parsePeerId } from '../../identity/invite.js'
import type { PeerIdString } from '../../ids.js'
import { forComponent } from '../../logger.js'
import { MalformedFrameError } from '../errors.js'
import { readOneFrame, writeOneFrame } from '../request.js'
import {
  bundleToPb, headerFromPb, oneTimeKeysFromPb, verifyHeader,
  type BundleData, type BundleHeaderData, type OneTimeKeyData
} from './codec.js'
import { MAX_PREKEY_ERROR_MESSAGE, MAX_PREKEY_REQUEST_BYTES, PREKEYS_PROTOCOL, PREKEYS_TIMEOUT_MS } from './constants.js'
import { PublishNotAcceptedError } from './errors.js'
import { PrekeyRequest, PrekeyResponse } from './pb/prekeys.js'

const log = forComponent('prekeys')

/**
 * What a prekey server serves. A relay stores everyone's bundles (relay/prekeys); a node
 * serves only its own and has no `publish`. Errors the backend throws that are ParleyErrors
 * become named refusals; anything else resets the stream.
 */
export interface PrekeyBackend {
  /**
   * Store `owner`'s header (replacing the last) and add its one-time keys; returns how many
   * one-time keys are now held for `owner`. `owner` is the Noise-verified caller, and the
   * header has passed verifyHeader for it.
   */
  publish?(owner: PeerIdString, header: BundleHeaderData, preKeys: OneTimeKeyData[]): Promise<number>
  /** `owner`'s bundle for `requester` (the Noise-verified caller), or undefined if there is none. */
  fetch(owner: PeerIdString, requester: PeerIdString): Promise<BundleData | undefined>
}

/** Where the handler is registered: a libp2p node, or its registrar (inside a libp2p service). */
export interface ProtocolHost {
  handle(protocol: string, handler: StreamHandler, options?: StreamHandlerOptions): Promise<void>
  unhandle(protocol: string): Promise<void>
}

/** Counters (relays export them in /metrics). `refused` holds refusals and stream resets, by error name. */
export interface PrekeyServerStats {
  requests: number
  publishes: number
  fetches: number
  refused: Map<string, number>
}

export interface PrekeyServerOptions {
  /** Prekey streams one connection may have open at once, each way. */
  maxStreamsPerConnection?: number
}

/**
 * The listener side of `/parley/prekeys/1.0.0`: reads one bounded request per stream and
 * answers it from a PrekeyBackend. The owner of a PUBLISH is always the connection's
 * Noise-verified remote peer (the protocol has no field for it), and its header must pass
 * verifyHeader for that peer before the backend sees it, so nobody can publish for someone
 * else. Bad frames reset the stream with a named error, counted in `stats.refused`.
 *
 * @example
 * const server = new PrekeyServer(libp2p, { fetch: async (owner) => owner === me ? myBundle() : undefined })
 * await server.start()
 */
export class PrekeyServer implements Startable {
  readonly stats: PrekeyServerStats = { requests: 0, publishes: 0, fetches: 0, refused: new Map() }

  constructor (
    private readonly host: ProtocolHost,
    private readonly backend: PrekeyBackend,
    private readonly options: PrekeyServerOptions = {}
  ) {}

  async start (): Promise<void> {
    const streams = this.options.maxStreamsPerConnection ?? 8
    await this.host.handle(PREKEYS_PROTOCOL, (stream, connection) => {
      this.handle(stream, connection).catch((err: unknown) => { log.error('prekey stream failed: %e', err) })
    }, { maxInboundStreams: streams, maxOutboundStreams: streams, runOnLimitedConnection: true })
  }

  async stop (): Promise<void> {
    await this.host.unhandle(PREKEYS_PROTOCOL)
  }

  private async handle (stream: Stream, connection: Connection): Promise<void> {
    const caller = connection.remotePeer.toString() as PeerIdString
    const timer = setTimeout(() => { stream.abort(new MalformedFrameError('prekey request timed out')) }, PREKEYS_TIMEOUT_MS)
    try {
      const frame = await readOneFrame(stream, MAX_PREKEY_REQUEST_BYTES)
      let req: PrekeyRequest
      try {
        // No count limit on pre_keys here: the frame bound caps them, and answer() refuses
        // more than a publish may carry by name (ProtocolLimitError).
        req = PrekeyRequest.decode(frame)
      } catch (err) {
        throw new MalformedFrameError(`prekey request does not decode: ${(err as Error).message}`)
      }
      this.stats.requests++
      await writeOneFrame(stream, PrekeyResponse.encode(await this.answer(caller, req)))
    } catch (err) {
      this.count((err as Error).name)
      log('resetting prekey stream from %s: %s', caller, (err as Error).name)
      stream.abort(err as Error)
    } finally {
      clearTimeout(timer)
    }
  }

  private async answer (caller: PeerIdString, req: PrekeyRequest): Promise<PrekeyResponse> {
    const base: PrekeyResponse = { ok: true, errorName: '', errorMessage: '', remaining: 0 }
    try {
      switch (req.op) {
        case PrekeyRequest.Op.PUBLISH: {
          if (this.backend.publish === undefined) throw new PublishNotAcceptedError('this peer serves only its own prekey bundle')
          const header = headerFromPb(req.header)
          const preKeys = oneTimeKeysFromPb(req.preKeys)
          await verifyHeader(caller, header) // the owner is the caller, whatever the request says
          const remaining = await this.backend.publish(caller, header, preKeys)
          this.stats.publishes++
          return { ...base, remaining }
        }
        case PrekeyRequest.Op.FETCH: {
          const owner = parsePeerId(req.owner)
          const bundle = await this.backend.fetch(owner, caller)
          this.stats.fetches++
          return bundle === undefined ? base : { ...base, bundle: bundleToPb(bundle) }
        }
        default:
          throw new InvalidRequestError('unknown prekey request op')
      }
    } catch (err) {
      if (!(err instanceof ParleyError)) {
        log.error('prekey request from %s failed: %e', caller, err) // e.g. the backend's database
        throw err
      }
      this.count(err.name)
      return { ...base, ok: false, errorName: err.name, errorMessage: err.message.slice(0, MAX_PREKEY_ERROR_MESSAGE) }
    }
  }

  private count (name: string): void {
    this.stats.refused.set(name, (this.stats.refused.get(name) ?? 0) + 1)
  }
}
