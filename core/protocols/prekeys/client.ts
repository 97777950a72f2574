import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p } from '@libp2p/interface'
import { BindingError } from '../../crypto/binding.js'
import { InvalidPeerIdError, InvalidRequestError } from '../../errors.js'
import { parsePeerId } from '../../identity/invite.js'
import type { PeerIdString } from '../../ids.js'
import { MalformedFrameError, ProtocolLimitError, refusalDecoder } from '../errors.js'
import { requestResponse } from '../request.js'
import {
  bundleFromPb, checkHeaderShape, checkOneTimeKeys, headerToPb, oneTimeKeyToPb, verifyHeader,
  type BundleData, type BundleHeaderData, type OneTimeKeyData
} from './codec.js'
import { MAX_PREKEY_RESPONSE_BYTES, PREKEYS_PARALLEL, PREKEYS_TIMEOUT_MS, PREKEYS_PROTOCOL } from './constants.js'
import { KeyedLimiter } from '../../limiter.js'
import { InvalidBundleError, PrekeyRefusedError, PrekeyStoreFullError, PublishNotAcceptedError } from './errors.js'
import { PrekeyRequest, PrekeyResponse } from './pb/prekeys.js'

/** The error a refusal named `name` is thrown as: its own class when known, else PrekeyRefusedError. */
export const refusalError = refusalDecoder([
  BindingError, InvalidBundleError, PrekeyStoreFullError, PublishNotAcceptedError, ProtocolLimitError, InvalidPeerIdError, InvalidRequestError
], PrekeyRefusedError, 'refused by the server')

/**
 * The client side of `/parley/prekeys/1.0.0`. `publish` stores our bundle on a relay (the
 * relay takes the owner from the connection, never from the request); `fetch` gets a
 * peer's bundle from a relay or from the peer itself and always verifies it, so a relay
 * that swaps keys is caught (BindingError / InvalidBundleError) rather than believed.
 *
 * @example
 * const prekeys = new PrekeyClient(libp2p)
 * const remaining = await prekeys.publish(relayId, header, oneTimeKeys) // one-time keys the relay holds for us
 * const bundle = await prekeys.fetch(relayId, bobId) // verified, or undefined if the relay has none
 */
export class PrekeyClient {
  /** At most PREKEYS_PARALLEL requests at once per server; the others wait their turn. */
  private readonly perServer = new KeyedLimiter(PREKEYS_PARALLEL)

  constructor (private readonly host: Pick<Libp2p, 'dialProtocol'>) {}

  /** Store our header (replacing the previous one) and add one-time keys; returns how many the server now holds for us. */
  async publish (server: PeerIdString, header: BundleHeaderData, preKeys: OneTimeKeyData[]): Promise<number> {
    checkHeaderShape(header)
    checkOneTimeKeys(preKeys)
    const res = await this.call(server, {
      op: PrekeyRequest.Op.PUBLISH,
      header: headerToPb(header),
      preKeys: preKeys.map(oneTimeKeyToPb),
      owner: ''
    })
    return res.remaining
  }

  /**
   * `owner`'s bundle (header plus at most one one-time key), verified against `owner`'s peer
   * id; undefined if the server has none. Throws BindingError or InvalidBundleError if the
   * answer is not `owner`'s.
   */
  async fetch (server: PeerIdString, owner: PeerIdString): Promise<BundleData | undefined> {
    parsePeerId(owner)
    const res = await this.call(server, { op: PrekeyRequest.Op.FETCH, preKeys: [], owner })
    if (res.bundle === undefined) return undefined
    const bundle = bundleFromPb(res.bundle)
    await verifyHeader(owner, bundle.header)
    return bundle
  }

  private async call (server: PeerIdString, req: PrekeyRequest): Promise<PrekeyResponse> {
    return await this.perServer.run(server, async () => await this.callNow(server, req))
  }

  private async callNow (server: PeerIdString, req: PrekeyRequest): Promise<PrekeyResponse> {
    // One deadline for the dial, the request and the response.
    const signal = AbortSignal.timeout(PREKEYS_TIMEOUT_MS)
    const stream = await this.host.dialProtocol(peerIdFromString(server), PREKEYS_PROTOCOL, { signal, runOnLimitedConnection: true })
    const onTimeout = (): void => { stream.abort(signal.reason instanceof Error ? signal.reason : new Error('prekey request timed out')) }
    signal.addEventListener('abort', onTimeout, { once: true })
    let frame: Uint8Array
    try {
      frame = await requestResponse(stream, PrekeyRequest.encode(req), MAX_PREKEY_RESPONSE_BYTES)
    } catch (err) {
      stream.abort(err as Error)
      throw err
    } finally {
      signal.removeEventListener('abort', onTimeout)
    }
    let res: PrekeyResponse
    try {
      res = PrekeyResponse.decode(frame)
    } catch (err) {
      throw new MalformedFrameError(`bad prekey response: ${(err as Error).message}`)
    }
    if (!res.ok) throw refusalError(res.errorName, res.errorMessage)
    return res
  }
}
