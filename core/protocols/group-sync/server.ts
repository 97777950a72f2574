import type { Connection, Libp2p, Startable, Stream } from '@libp2p/interface'
import { ParleyError } from '../../errors.js'
import type { GroupId, PeerIdString } from '../../ids.js'
import { forComponent } from '../../logger.js'
import { ProtocolLimitError } from '../errors.js'
import type { GroupSyncBackend } from './client.js'
import { GROUP_SYNC_PROTOCOL, MAX_SYNC_STREAMS, MAX_SYNCS, MAX_SYNCS_PER_PEER, SYNC_IDLE_TIMEOUT_MS } from './constants.js'
import { GroupSyncClosedError, GroupSyncForbiddenError, UnknownGroupError } from './errors.js'
import { SyncSession } from './session.js'

const log = forComponent('group-sync')

export interface GroupSyncServerOptions {
  /** How long to wait for each of the client's frames (default SYNC_IDLE_TIMEOUT_MS). */
  idleTimeoutMs?: number
  /** Inbound syncs at once from everyone (default MAX_SYNCS). */
  maxSyncs?: number
  /** Inbound syncs at once from one peer (default MAX_SYNCS_PER_PEER). */
  maxSyncsPerPeer?: number
}

/** Counters for tests and metrics. `refused` holds refusals and resets, by error name. */
export interface GroupSyncServerStats {
  syncs: number
  completed: number
  recordsSent: number
  recordsReceived: number
  refused: Map<string, number>
}

/**
 * The listener side of `/parley/group-sync/1.0.0`. The caller is the connection's
 * Noise-verified remote peer (no frame names it); before anything about the group leaves,
 * the group must exist here (UnknownGroupError) and the backend must authorize the caller
 * (GroupSyncForbiddenError). Then: our state vector, the records the caller misses in acknowledged
 * chunks, the caller's records applied chunk by chunk, and a final DONE once they are durable.
 * Syncs at once are capped per peer and overall (ProtocolLimitError); limited (relayed)
 * connections are not served. Refusals and bad frames are counted in `stats.refused`.
 *
 * @example
 * const server = new GroupSyncServer(libp2p, backend)
 * await server.start()
 */
export class GroupSyncServer implements Startable {
  readonly stats: GroupSyncServerStats = { syncs: 0, completed: 0, recordsSent: 0, recordsReceived: 0, refused: new Map() }
  private readonly active = new Set<SyncSession>()
  private readonly perPeer = new Map<PeerIdString, number>()
  private running = false

  constructor (
    private readonly host: Pick<Libp2p, 'handle' | 'unhandle'>,
    private readonly backend: GroupSyncBackend,
    private readonly options: GroupSyncServerOptions = {}
  ) {}

  async start (): Promise<void> {
    await this.host.handle(GROUP_SYNC_PROTOCOL, (stream, connection) => {
      this.handle(stream, connection).catch((err: unknown) => { log.error('group-sync stream failed: %e', err) })
    }, {
      maxInboundStreams: MAX_SYNC_STREAMS,
      maxOutboundStreams: MAX_SYNC_STREAMS
      // not runOnLimitedConnection: bulk data stays off relay circuits
    })
    this.running = true
  }

  async stop (): Promise<void> {
    this.running = false
    await this.host.unhandle(GROUP_SYNC_PROTOCOL)
    // Running syncs are told why they end; what was acknowledged so far is durable on both sides.
    await Promise.all([...this.active].map(async (session) => { await session.fail(new GroupSyncClosedError('node stopping')) }))
    this.active.clear()
  }

  private async handle (stream: Stream, connection: Connection): Promise<void> {
    const caller = connection.remotePeer.toString() as PeerIdString
    const session = new SyncSession(stream, this.options.idleTimeoutMs ?? SYNC_IDLE_TIMEOUT_MS)
    this.active.add(session)
    this.stats.syncs++
    try {
      const release = this.admit(caller)
      try {
        const step1 = await session.expect('step1')
        if (typeof release !== 'function') throw release
        await this.serve(session, caller, step1)
      } finally {
        if (typeof release === 'function') release()
      }
      this.stats.completed++
    } catch (err) {
      if (!(err instanceof ParleyError)) log.error('group sync with %s failed: %e', caller, err)
      this.count((err as Error).name)
      log('refusing group sync from %s: %s', caller, (err as Error).name)
      await session.fail(err as Error)
    } finally {
      this.active.delete(session)
    }
  }

  /**
   * Take a slot for `caller` and return its release, or return the ProtocolLimitError to
   * refuse with. The refusal waits for the caller's step 1: written at once, it can reach the
   * dialler inside its protocol negotiation and break that instead of naming the limit.
   */
  private admit (caller: PeerIdString): (() => void) | ProtocolLimitError {
    if (!this.running) return new ProtocolLimitError('not serving group syncs (stopping)')
    const mine = this.perPeer.get(caller) ?? 0
    let total = 0
    for (const n of this.perPeer.values()) total += n
    if (mine >= (this.options.maxSyncsPerPeer ?? MAX_SYNCS_PER_PEER)) return new ProtocolLimitError(`${mine} group syncs with this peer already running`)
    if (total >= (this.options.maxSyncs ?? MAX_SYNCS)) return new ProtocolLimitError(`${total} group syncs already running`)
    this.perPeer.set(caller, mine + 1)
    return () => {
      const left = (this.perPeer.get(caller) ?? 1) - 1
      if (left > 0) this.perPeer.set(caller, left)
      else this.perPeer.delete(caller)
    }
  }

  private async serve (session: SyncSession, caller: PeerIdString, { group, stateVector }: { group: GroupId, stateVector: Uint8Array }): Promise<void> {
    const ours = this.backend.stateVector(group)
    if (ours === undefined) throw new UnknownGroupError('no such group here')
    if (!this.backend.authorize(group, caller)) throw new GroupSyncForbiddenError('not a member of this group')
    // Everything that can refuse runs before our first byte about the group goes out.
    const missing = await this.backend.missing(group, stateVector)
    await session.send({ kind: 'step1', group, stateVector: ours })
    this.stats.recordsSent += await session.sendRecords(missing)
    const received = await session.receiveRecords(async (records) => {
      await this.backend.receive(group, caller, records)
      this.stats.recordsReceived += records.length
    })
    await session.send({ kind: 'done', count: received })
    await session.finish()
  }

  private count (name: string): void {
    this.stats.refused.set(name, (this.stats.refused.get(name) ?? 0) + 1)
  }
}
