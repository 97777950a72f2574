import { logger as libp2pLogger } from '@libp2p/logger'
import type { Logger } from '@libp2p/interface'

/**
 * One logger per component, enabled with `DEBUG=parley:*` (the `debug` convention libp2p
 * uses too). Core never writes to the console directly.
 *
 * @example
 * const log = forComponent('dm')
 * log('sent %d envelopes', 3)
 */
export function forComponent (name: string): Logger {
  return libp2pLogger(`parley:${name}`)
}

export type { Logger }
