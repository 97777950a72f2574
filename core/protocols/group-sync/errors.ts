import { ParleyError } from '../../errors.js'
import { RemoteRefusalError } from '../errors.js'

/** The peer asked does not hold the group (its backend has no state vector for it). */
export class UnknownGroupError extends ParleyError {
  static override name = 'UnknownGroupError'
  override name = 'UnknownGroupError'
}

/** The caller is not a current member of the group, so it may not sync it. */
export class GroupSyncForbiddenError extends ParleyError {
  static override name = 'GroupSyncForbiddenError'
  override name = 'GroupSyncForbiddenError'
}

/** The other side sent nothing for SYNC_IDLE_TIMEOUT_MS while we waited for its next frame. */
export class GroupSyncTimeoutError extends ParleyError {
  static override name = 'GroupSyncTimeoutError'
  override name = 'GroupSyncTimeoutError'
}

/**
 * The other side refused the sync with an error name this side does not know; `remoteName`
 * is that name. (Known names are thrown as their own classes.)
 */
export class GroupSyncRefusedError extends RemoteRefusalError {
  static override name = 'GroupSyncRefusedError'
  override name = 'GroupSyncRefusedError'
}

/** The sync stream ended before the sync was done: the other side went away, or this node is stopping. */
export class GroupSyncClosedError extends ParleyError {
  static override name = 'GroupSyncClosedError'
  override name = 'GroupSyncClosedError'
}
