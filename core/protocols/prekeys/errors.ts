import { ParleyError } from '../../errors.js'
import { RemoteRefusalError } from '../errors.js'

/**
 * A prekey bundle (or one-time key) with a missing field, a wrong size, a key that does not
 * deserialize, duplicate one-time key ids, or a prekey signature that the identity key did
 * not make.
 */
export class InvalidBundleError extends ParleyError {
  static override name = 'InvalidBundleError'
  override name = 'InvalidBundleError'
}

/** The relay holds bundles for as many owners as it is configured to; a new owner is refused. */
export class PrekeyStoreFullError extends ParleyError {
  static override name = 'PrekeyStoreFullError'
  override name = 'PrekeyStoreFullError'
}

/** The peer asked serves only its own bundle: it stores nobody else's (PUBLISH is refused). */
export class PublishNotAcceptedError extends ParleyError {
  static override name = 'PublishNotAcceptedError'
  override name = 'PublishNotAcceptedError'
}

/**
 * The server refused a prekey request with an error name this client does not know;
 * `remoteName` is that name. (Known names are thrown as their own classes.)
 */
export class PrekeyRefusedError extends RemoteRefusalError {
  static override name = 'PrekeyRefusedError'
  override name = 'PrekeyRefusedError'
}
