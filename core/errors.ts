/**
 * Named errors shared by the whole engine. Callers branch on `err.name`; the API layer sends
 * `{ name, message }` to clients, so names are part of the public contract (docs/cli.md).
 */
export class ParleyError extends Error {
  static override name = 'ParleyError'
  override name = 'ParleyError'
}

/** A request or argument is malformed (bad JSON, missing field, wrong type). */
export class InvalidRequestError extends ParleyError {
  static override name = 'InvalidRequestError'
  override name = 'InvalidRequestError'
}

/** The API was asked for a command it does not know. */
export class UnknownCommandError extends ParleyError {
  static override name = 'UnknownCommandError'
  override name = 'UnknownCommandError'
}

/** An invite URI could not be parsed or names an invalid peer. */
export class InvalidInviteError extends ParleyError {
  static override name = 'InvalidInviteError'
  override name = 'InvalidInviteError'
}

/** A peer id string is not a valid libp2p peer id. */
export class InvalidPeerIdError extends ParleyError {
  static override name = 'InvalidPeerIdError'
  override name = 'InvalidPeerIdError'
}

/** The named contact does not exist. */
export class UnknownContactError extends ParleyError {
  static override name = 'UnknownContactError'
  override name = 'UnknownContactError'
}

/** A contact invite names this node itself. */
export class SelfContactError extends ParleyError {
  static override name = 'SelfContactError'
  override name = 'SelfContactError'
}

/** A message body is over the size limit. */
export class MessageTooLargeError extends ParleyError {
  static override name = 'MessageTooLargeError'
  override name = 'MessageTooLargeError'
}

/** The messenger is not running (not started yet, or stopping). */
export class NotRunningError extends ParleyError {
  static override name = 'NotRunningError'
  override name = 'NotRunningError'
}

/** The data directory is held by another running node. */
export class DataDirLockedError extends ParleyError {
  static override name = 'DataDirLockedError'
  override name = 'DataDirLockedError'
}

/** Stored data could not be read back (corrupt record or unknown format). */
export class CorruptRecordError extends ParleyError {
  static override name = 'CorruptRecordError'
  override name = 'CorruptRecordError'
}

/**
 * A key file is sealed by a key protector that is not here (the data dir of the desktop app,
 * opened without it, or by another protector), or the protector cannot open it (the OS
 * keychain entry is gone). See core/identity/key-protector.ts.
 */
export class SealedKeyError extends ParleyError {
  static override name = 'SealedKeyError'
  override name = 'SealedKeyError'
}

/** Turn anything thrown into the `{ name, message }` pair the API reports. */
export function describeError (err: unknown): { name: string, message: string } {
  if (err instanceof Error) {
    return { name: err.name, message: err.message }
  }
  return { name: 'Error', message: String(err) }
}
