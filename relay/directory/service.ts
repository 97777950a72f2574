import { peerIdFromString } from '@libp2p/peer-id'
import type { Connection, Libp2p, Startable, Stream } from '@libp2p/interface'
import { forComponent } from '../../core/logger.js'
import { MalformedFrameError } from '../../core/protocols/errors.js'
import { readOneFrame, writeOneFrame } from '../../core/protocols/request.js'
import { DIRECTORY_PROTOCOL, DIRECTORY_TIMEOUT_MS, MAX_DIRECTORY_REQUEST_BYTES } from '../../core/protocols/directory/constants.js'
import { DirectoryRequest, DirectoryResponse } from '../../core/protocols/directory/pb/directory.js'

const log = forComponent('relay:directory')

/**
 * `/parley/directory/1.0.0` on a relay: answers "where is X reachable now" with X's own
 * signed peer record (which X sends the relay through identify), but only while X is
 * registered here: connected to this relay. A peer that left is not advertised.
 *
 * @example
 * await new DirectoryService(libp2p).start()
 */
export class DirectoryService implements Startable {
  readonly stats = { lookups: 0, found: 0, refused: new Map<string, number>() }

  constructor (private readonly node: Pick<Libp2p, 'handle' | 'unhandle' | 'peerStore' | 'getConnections'>) {}

  async start (): Promise<void> {
    await this.node.handle(DIRECTORY_PROTOCOL, (stream, connection) => {
      this.handle(stream, connection).catch((err: unknown) => { log.error('directory stream failed: %e', err) })
    }, { maxInboundStreams: 8, maxOutboundStreams: 1, runOnLimitedConnection: true })
  }

  async stop (): Promise<void> {
    await this.node.unhandle(DIRECTORY_PROTOCOL)
  }

  private async handle (stream: Stream, _connection: Connection): Promise<void> {
    const timer = setTimeout(() => { stream.abort(new MalformedFrameError('directory request timed out')) }, DIRECTORY_TIMEOUT_MS)
    try {
      const frame = await readOneFrame(stream, MAX_DIRECTORY_REQUEST_BYTES)
      let req: DirectoryRequest
      try {
        req = DirectoryRequest.decode(frame)
      } catch (err) {
        throw new MalformedFrameError(`directory request does not decode: ${(err as Error).message}`)
      }
      this.stats.lookups++
      const record = await this.recordOf(req.peer)
      if (record !== undefined) this.stats.found++
      await writeOneFrame(stream, DirectoryResponse.encode({ found: record !== undefined, record: record ?? new Uint8Array() }))
    } catch (err) {
      const name = (err as Error).name
      this.stats.refused.set(name, (this.stats.refused.get(name) ?? 0) + 1)
      stream.abort(err as Error)
    } finally {
      clearTimeout(timer)
    }
  }

  private async recordOf (peer: string): Promise<Uint8Array<ArrayBuffer> | undefined> {
    let id
    try {
      id = peerIdFromString(peer)
    } catch {
      return undefined
    }
    if (this.node.getConnections(id).length === 0) return undefined
    const known = await this.node.peerStore.get(id).catch(() => undefined)
    const envelope = known?.peerRecordEnvelope
    return envelope === undefined ? undefined : new Uint8Array(envelope)
  }
}
