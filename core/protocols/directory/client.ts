import { peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id'
import { PeerRecord, RecordEnvelope } from '@libp2p/peer-record'
import type { Libp2p } from '@libp2p/interface'
import type { PeerIdString } from '../../ids.js'
import { ParleyError } from '../../errors.js'
import { KeyedLimiter } from '../../limiter.js'
import { MalformedFrameError } from '../errors.js'
import { requestResponse } from '../request.js'
import { DIRECTORY_PARALLEL, DIRECTORY_PROTOCOL, DIRECTORY_TIMEOUT_MS, MAX_DIRECTORY_RESPONSE_BYTES } from './constants.js'
import { DirectoryRequest, DirectoryResponse } from './pb/directory.js'

/** A directory answer whose record is not signed by the peer asked about. */
export class ForgedRecordError extends ParleyError {
  static override name = 'ForgedRecordError'
  override name = 'ForgedRecordError'
}

/**
 * Asks a relay where a peer is reachable now and checks the answer: the record must be a
 * valid envelope signed by that very peer, so a relay can only withhold, never redirect.
 * At most DIRECTORY_PARALLEL lookups run at once per relay; the others wait their turn (a
 * relay resets streams beyond its per-connection limit).
 *
 * @example
 * const addrs = await new DirectoryClient(libp2p).lookup(relayId, bobId) // ['/ip4/.../p2p-circuit', ...] or undefined
 */
export class DirectoryClient {
  private readonly perRelay = new KeyedLimiter(DIRECTORY_PARALLEL)

  constructor (private readonly host: Pick<Libp2p, 'dialProtocol'>) {}

  async lookup (relay: PeerIdString, peer: PeerIdString): Promise<string[] | undefined> {
    return await this.perRelay.run(relay, async () => await this.lookupNow(relay, peer))
  }

  private async lookupNow (relay: PeerIdString, peer: PeerIdString): Promise<string[] | undefined> {
    const stream = await this.host.dialProtocol(peerIdFromString(relay), DIRECTORY_PROTOCOL, {
      signal: AbortSignal.timeout(DIRECTORY_TIMEOUT_MS),
      runOnLimitedConnection: true
    })
    let frame: Uint8Array
    try {
      frame = await requestResponse(stream, DirectoryRequest.encode({ peer }), MAX_DIRECTORY_RESPONSE_BYTES)
    } catch (err) {
      stream.abort(err as Error)
      throw err
    }
    let res: DirectoryResponse
    try {
      res = DirectoryResponse.decode(frame)
    } catch (err) {
      throw new MalformedFrameError(`bad directory response: ${(err as Error).message}`)
    }
    if (!res.found) return undefined
    let record: PeerRecord
    try {
      const envelope = await RecordEnvelope.openAndCertify(res.record, PeerRecord.DOMAIN)
      record = PeerRecord.createFromProtobuf(envelope.payload)
      const wanted = peerIdFromString(peer)
      if (!peerIdFromPublicKey(envelope.publicKey).equals(wanted) || !record.peerId.equals(wanted)) {
        throw new ForgedRecordError('record is not signed by the peer asked about')
      }
    } catch (err) {
      if (err instanceof ForgedRecordError) throw err
      throw new ForgedRecordError(`record does not verify: ${(err as Error).message}`)
    }
    return record.multiaddrs.map((a) => a.toString())
  }
}
