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
