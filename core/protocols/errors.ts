import { ParleyError } from '../errors.js'

/** A frame's length prefix is larger than the protocol allows (e.g. a claimed 4 GiB). */
export class FrameTooLargeError extends ParleyError {
  static override name = 'FrameTooLargeError'
  override name = 'FrameTooLargeError'
}

/** A length prefix is not a valid varint (too many continuation bytes). */
export class InvalidLengthPrefixError extends ParleyError {
  static override name = 'InvalidLengthPrefixError'
  override name = 'InvalidLengthPrefixError'
}

/** The stream ended in the middle of a frame. */
export class TruncatedFrameError extends ParleyError {
  static override name = 'TruncatedFrameError'
  override name = 'TruncatedFrameError'
}

/** A complete frame did not decode, or decoded to something the protocol forbids. */
export class MalformedFrameError extends ParleyError {
  static override name = 'MalformedFrameError'
  override name = 'MalformedFrameError'
}

/** The remote sent more than the protocol lets it have outstanding. */
export class ProtocolLimitError extends ParleyError {
  static override name = 'ProtocolLimitError'
  override name = 'ProtocolLimitError'
}

/**
 * The other side refused a request with an error name this side does not know; `remoteName`
 * is that name. Each protocol has its own subclass (PrekeyRefusedError, GroupSyncRefusedError).
 */
export class RemoteRefusalError extends ParleyError {
  static override name = 'RemoteRefusalError'
  override name = 'RemoteRefusalError'
  constructor (readonly remoteName: string, message: string) {
    super(`${remoteName}: ${message}`)
  }
}

type KnownError = new (message: string) => ParleyError

/**
 * How a protocol client turns a refusal (an error name and message from the other side) into
 * an error: names in `known` as their own classes (the message prefixed with `who`, e.g.
 * "refused by the server"), any other name as `Unknown`.
 *
 * @example
 * export const refusalError = refusalDecoder([ProtocolLimitError], PrekeyRefusedError, 'refused by the server')
 * refusalError('ProtocolLimitError', 'slow down') // ProtocolLimitError: refused by the server: slow down
 */
export function refusalDecoder (
  known: readonly KnownError[],
  Unknown: new (remoteName: string, message: string) => RemoteRefusalError,
  who: string
): (name: string, message: string) => ParleyError {
  const byName = new Map<string, KnownError>(known.map((k) => [k.name, k]))
  return (name, message) => {
    const Known = byName.get(name)
    return Known === undefined ? new Unknown(name, message) : new Known(`${who}: ${message}`)
  }
}
