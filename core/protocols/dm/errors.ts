import { ParleyError } from '../../errors.js'

/** An envelope frame decoded but breaks the rules (bad id, unknown type, oversize text). */
export class InvalidEnvelopeError extends ParleyError {
  static override name = 'InvalidEnvelopeError'
  override name = 'InvalidEnvelopeError'
}

/** The DM stream closed before the envelopes written on it were acknowledged. */
export class DmStreamClosedError extends ParleyError {
  static override name = 'DmStreamClosedError'
  override name = 'DmStreamClosedError'
}
