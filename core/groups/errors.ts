import { ParleyError } from '../errors.js'

/**
 * Named errors of group records and group documents. Callers branch on `err.name`; every
 * refusal leaves the group document unchanged.
 */

/** A group record that does not decode, is over the size limit, or holds an update yjs cannot read. */
export class InvalidGroupRecordError extends ParleyError {
  static override name = 'InvalidGroupRecordError'
  override name = 'InvalidGroupRecordError'
}

/** A group record whose signature is not its author's over its group and update. */
export class GroupSignatureError extends ParleyError {
  static override name = 'GroupSignatureError'
  override name = 'GroupSignatureError'
}

/**
 * Why a well-formed, well-signed record was refused:
 * - `not-admin`: an admin-only change from a peer that is not an admin.
 * - `not-member`: the author was removed or left.
 * - `unknown-author`: the author has no entry in the member list (possibly the record adding
 *   them has not arrived yet; it may be accepted after a sync).
 * - `foreign-message`: a change to another member's message.
 * - `invalid-struct`: a struct yjs would apply but the group model forbids (GC, Skip, nested
 *   types, other content kinds, another client id, unknown root names, right origins).
 * - `invalid-value`: a value of the wrong shape (name too long, bad role, `from` not the author...).
 * - `invalid-delete`: a delete set naming items the record does not overwrite.
 * - `wrong-group`: a record of another group.
 * - `not-creation`: the first record of a group that does not create it properly.
 * - `conflict`: a record whose clocks overlap a different stored record of the same author.
 * - `client-collision`: a member whose yjs client id equals another member's.
 */
export type RefusalReason = 'not-admin' | 'not-member' | 'unknown-author' | 'foreign-message' |
'invalid-struct' | 'invalid-value' | 'invalid-delete' | 'wrong-group' | 'not-creation' | 'conflict' |
'client-collision'

/** A record (or a local change) that breaks the group's rules; `reason` says which. */
export class GroupUpdateRefusedError extends ParleyError {
  static override name = 'GroupUpdateRefusedError'
  override name = 'GroupUpdateRefusedError'
  readonly reason: RefusalReason

  constructor (reason: RefusalReason, message: string) {
    super(`${reason}: ${message}`)
    this.reason = reason
  }
}

/** An admin-only change (members, roles, name) by a peer that is not an admin of the group. */
export class NotGroupAdminError extends GroupUpdateRefusedError {
  static override name = 'NotGroupAdminError'
  override name = 'NotGroupAdminError'

  constructor (message: string) {
    super('not-admin', message)
  }
}

/** A change by a peer that is not (or no longer) a member of the group. */
export class NotGroupMemberError extends GroupUpdateRefusedError {
  static override name = 'NotGroupMemberError'
  override name = 'NotGroupMemberError'

  constructor (reason: 'not-member' | 'unknown-author', message: string) {
    super(reason, message)
  }
}

/** A local change naming a peer that is not a current member (e.g. removing a stranger). */
export class UnknownGroupMemberError extends ParleyError {
  static override name = 'UnknownGroupMemberError'
  override name = 'UnknownGroupMemberError'
}

/**
 * A record that needs structs this document does not have yet (an earlier record of the same
 * author, an item it overwrites, or the group's creation). Not applied; it comes again with
 * the next sync, after what it depends on.
 */
export class MissingDependencyError extends ParleyError {
  static override name = 'MissingDependencyError'
  override name = 'MissingDependencyError'
}

/** A yjs state vector that does not decode. */
export class InvalidStateVectorError extends ParleyError {
  static override name = 'InvalidStateVectorError'
  override name = 'InvalidStateVectorError'
}

/** A group command that does not fit the group's state here (e.g. accepting a group already joined). */
export class GroupStateError extends ParleyError {
  static override name = 'GroupStateError'
  override name = 'GroupStateError'
}

/** A group would have more than MAX_GROUP_MEMBERS members. */
export class TooManyMembersError extends ParleyError {
  static override name = 'TooManyMembersError'
  override name = 'TooManyMembersError'
}

export { UnknownGroupError } from '../protocols/group-sync/errors.js'
