import { peerIdFromString } from '@libp2p/peer-id'
import type { AbortOptions, Libp2p } from '@libp2p/interface'
import { InvalidRequestError } from '../../errors.js'
import { isGroupId, type GroupId, type PeerIdString } from '../../ids.js'
import { MalformedFrameError } from '../errors.js'
import { GROUP_SYNC_PROTOCOL, SYNC_IDLE_TIMEOUT_MS } from './constants.js'
import { SyncSession } from './session.js'

/**
 * What group-sync needs from the group doc, on both sides. State vectors and records are
 * opaque bytes to the protocol: the doc module encodes, validates and applies them.
 * Errors it throws that are ParleyErrors become named refusals to the other side; anything
 * else resets the stream.
 */
export interface GroupSyncBackend {
  /** Server side: may `peer` (the Noise-verified caller) sync `group` with us (a current member)? */
  authorize (group: GroupId, peer: PeerIdString): boolean
  /** Our state vector for the group; undefined if we do not have the group. */
  stateVector (group: GroupId): Uint8Array | undefined
  /**
   * Encoded records the holder of `stateVector` misses (may throw a named error for a garbage
   * vector). An empty `stateVector` (zero bytes) comes from a peer without the group: it misses everything.
   */
  missing (group: GroupId, stateVector: Uint8Array): Uint8Array[] | Promise<Uint8Array[]>
  /** Validate, apply and persist records received from `from`; resolves once durable. Bad records are skipped, not thrown. */
  receive (group: GroupId, from: PeerIdString, records: Uint8Array[]): Promise<void>
}

export interface GroupSyncClientOptions {
  /** How long to wait for each of the server's frames (default SYNC_IDLE_TIMEOUT_MS). */
  idleTimeoutMs?: number
}

/** What one sync moved: records we sent the server, records we received (before the backend's own checks). */
export interface GroupSyncResult {
  sent: number
  received: number
}

/**
 * The client side of `/parley/group-sync/1.0.0`: catch up one group with one member. We send
 * our state vector; the server answers with its own and the records we miss, which we apply
 * chunk by chunk as they arrive; then we send what it misses, and it confirms once they are
 * durable. Never over a limited (relayed) connection: a sync can move megabytes.
 *
 * Throws the server's refusal as a named error (UnknownGroupError, GroupSyncForbiddenError,
 * ProtocolLimitError, ...), GroupSyncTimeoutError if it goes quiet, MalformedFrameError and
 * the framing errors for a bad answer.
 *
 * @example
 * const sync = new GroupSyncClient(libp2p, backend)
 * const { sent, received } = await sync.sync(bobId, groupId, { signal: AbortSignal.timeout(30_000) })
 */
export class GroupSyncClient {
  constructor (
    private readonly host: Pick<Libp2p, 'dialProtocol'>,
    private readonly backend: GroupSyncBackend,
    private readonly options: GroupSyncClientOptions = {}
  ) {}

  async sync (peer: PeerIdString, group: GroupId, options: AbortOptions = {}): Promise<GroupSyncResult> {
    if (!isGroupId(group)) throw new InvalidRequestError('not a group id')
    const { signal } = options
    const stream = await this.host.dialProtocol(peerIdFromString(peer), GROUP_SYNC_PROTOCOL, { signal })
    const session = new SyncSession(stream, this.options.idleTimeoutMs ?? SYNC_IDLE_TIMEOUT_MS)
    const onAbort = (): void => { stream.abort(signal?.reason instanceof Error ? signal.reason : new Error('group sync aborted')) }
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      await session.send({ kind: 'step1', group, stateVector: this.backend.stateVector(group) ?? new Uint8Array() })
      const theirs = await session.expect('step1')
      if (theirs.group !== group) throw new MalformedFrameError('the peer answered for another group')
      const received = await session.receiveRecords(async (records) => { await this.backend.receive(group, peer, records) })
      // Still without the group (the server's records were all refused): we have nothing it lacks.
      const ours = this.backend.stateVector(group) === undefined ? [] : await this.backend.missing(group, theirs.stateVector)
      const sent = await session.sendRecords(ours)
      const done = await session.expect('done')
      if (done.count !== sent) throw new MalformedFrameError(`the peer confirmed ${done.count} records of ${sent}`)
      await session.finish()
      return { sent, received }
    } catch (err) {
      // A refusal may arrive just before the reset that makes our own write fail: it says why.
      const reason = session.remoteRefusal ?? err as Error
      await session.fail(reason)
      throw reason
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
  }
}
