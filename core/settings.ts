import type { SettingsPatch } from './api/contract.js'
import { InvalidRequestError } from './errors.js'
import { forComponent } from './logger.js'
import { parseRelayAddr, parseRelayList, type RelayAddr } from './net/relays.js'

const log = forComponent('settings')

/** The store setting (`Store.putSetting`) that holds NetworkSettings as JSON, in one write. */
export const NETWORK_SETTING = 'network'

/** What `settings.set` may change, persisted together (see docs/architecture.md, "Settings"). */
export type NetworkSettings = Required<SettingsPatch>

export const DEFAULT_NETWORK_SETTINGS: Readonly<NetworkSettings> = Object.freeze({ relays: [], lanDiscovery: true })

const SETTABLE = ['relays', 'lanDiscovery'] as const

/**
 * Check a `settings.set` request: only the keys of NetworkSettings, each of the right type,
 * every relay a multiaddr with /p2p/<peerId>. Throws InvalidRequestError naming the first
 * problem, so nothing is applied when any field is bad.
 *
 * @example
 * parseSettingsPatch({ lanDiscovery: false }) // { lanDiscovery: false }
 * parseSettingsPatch({ relays: ['/ip4/1.2.3.4/tcp/4001'] }) // throws: must end with /p2p/<...>
 */
export function parseSettingsPatch (input: unknown): SettingsPatch {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) throw new InvalidRequestError('settings must be an object')
  const fields = input as Record<string, unknown>
  const unknown = Object.keys(fields).filter((k) => !(SETTABLE as readonly string[]).includes(k))
  if (unknown.length > 0) {
    throw new InvalidRequestError(`unknown setting${unknown.length > 1 ? 's' : ''} ${unknown.slice(0, 5).map((k) => `"${k.slice(0, 64)}"`).join(', ')} (settable: ${SETTABLE.join(', ')})`)
  }
  const patch: SettingsPatch = {}
  if ('relays' in fields) patch.relays = parseRelayList(fields.relays).map((r) => r.addr)
  if ('lanDiscovery' in fields) {
    if (typeof fields.lanDiscovery !== 'boolean') throw new InvalidRequestError('"lanDiscovery" must be true or false')
    patch.lanDiscovery = fields.lanDiscovery
  }
  return patch
}

/** The stored settings (undefined: never saved); anything unreadable falls back to the defaults, with a log line. */
export function readNetworkSettings (stored: string | undefined): NetworkSettings {
  if (stored === undefined) return { ...DEFAULT_NETWORK_SETTINGS, relays: [] }
  try {
    const patch = parseSettingsPatch(JSON.parse(stored))
    return { ...DEFAULT_NETWORK_SETTINGS, relays: [], ...patch }
  } catch (err) {
    log.error('stored network settings unreadable (%s); using defaults', (err as Error).message)
    return { ...DEFAULT_NETWORK_SETTINGS, relays: [] }
  }
}

/**
 * The relays to run: the stored list plus relays given on the command line (`--relay`). A flag
 * naming a relay already in the list (same peer id) replaces that entry's address; a new one
 * is appended. Throws InvalidRequestError for a bad flag or too many relays.
 */
export function mergeRelayFlags (stored: readonly string[], flags: readonly string[]): string[] {
  const out: RelayAddr[] = stored.map((r) => parseRelayAddr(r))
  for (const f of flags) {
    const r = parseRelayAddr(f)
    const i = out.findIndex((o) => o.peerId === r.peerId)
    if (i >= 0) out[i] = r
    else out.push(r)
  }
  return parseRelayList(out.map((r) => r.addr)).map((r) => r.addr)
}
