import type { ParleyClient } from './client.js'

/** What every view gets to talk to the node and report a failure. */
export interface AppActions {
  client: ParleyClient
  /** Runs a command, showing its error (and returning undefined) if it fails. */
  run: <T>(what: string, op: () => Promise<T>) => Promise<T | undefined>
}
