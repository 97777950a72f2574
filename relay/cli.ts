import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { multiaddr } from '@multiformats/multiaddr'
import type { Server } from 'node:http'
import { loadOrCreateIdentity } from '../core/identity/identity.js'
import { describeError, InvalidRequestError } from '../core/errors.js'
import { serveMetrics } from './metrics.js'
import { createRelayNode, DEFAULT_RELAY_LIMITS, type RelayLimits } from './relay-node.js'
import { DEFAULT_MAILBOX_LIMITS, MailboxService, type MailboxLimits } from './mailbox/service.js'
import { MailboxStore } from './mailbox/store.js'
import { MailboxNotifier } from './mailbox/notifier.js'
import { DirectoryService } from './directory/service.js'
import { DEFAULT_PREKEY_LIMITS, type PrekeyLimits } from './prekeys/service.js'
import { PrekeyStore } from './prekeys/store.js'

export const RELAY_USAGE = `usage: parley relay --data DIR --listen MULTIADDR [--listen MULTIADDR]... [--metrics HOST:PORT]
                    [--config FILE] [--max-reservations N] [--circuit-data-limit BYTES]
                    [--circuit-duration-limit MS] [--max-connections N] [--inbound-connection-threshold N]
                    [--max-pending-connections N]
                    [--mailbox-quota-count N] [--mailbox-quota-bytes BYTES] [--mailbox-ttl MS]
                    [--mailbox-deposits-per-second N] [--mailbox-deposit-burst N] [--mailbox-max-envelope-bytes BYTES]
                    [--prekeys-max-owners N] [--prekeys-claim-burst N] [--prekeys-claims-per-minute N]

Runs a Parley relay: bootstrap peer, circuit relay, store-and-forward mailbox, directory and
prekey directory.
Every option can also come from the environment (PARLEY_RELAY_DATA, PARLEY_RELAY_LISTEN
comma-separated, PARLEY_RELAY_METRICS, PARLEY_RELAY_MAX_RESERVATIONS, ...) or from a JSON
config file (--config; keys as the long options: {"listen": [...], "max-reservations": 500}).
Flags win over the environment, the environment over the file. See docs/relay.md.`

export interface RelayArgs {
  dataDir: string
  listen: string[]
  metrics?: { host: string, port: number }
  limits: RelayLimits
  mailbox: MailboxLimits
  prekeys: PrekeyLimits
}

const LIMIT_KEYS: Array<[keyof RelayLimits, string]> = [
  ['maxReservations', 'max-reservations'],
  ['circuitDataLimit', 'circuit-data-limit'],
  ['circuitDurationLimit', 'circuit-duration-limit'],
  ['maxConnections', 'max-connections'],
  ['inboundConnectionThreshold', 'inbound-connection-threshold'],
  ['maxIncomingPendingConnections', 'max-pending-connections']
]

const MAILBOX_KEYS: Array<[keyof MailboxLimits, string]> = [
  ['maxEnvelopeBytes', 'mailbox-max-envelope-bytes'],
  ['quotaCount', 'mailbox-quota-count'],
  ['quotaBytes', 'mailbox-quota-bytes'],
  ['depositsPerSecond', 'mailbox-deposits-per-second'],
  ['depositBurst', 'mailbox-deposit-burst'],
  ['ttlMs', 'mailbox-ttl']
]

const PREKEY_KEYS: Array<[keyof PrekeyLimits, string]> = [
  ['maxOwners', 'prekeys-max-owners'],
  ['claimBurst', 'prekeys-claim-burst'],
  ['claimsPerMinute', 'prekeys-claims-per-minute']
]

type Raw = Record<string, string | string[] | undefined>

export async function parseRelayArgs (argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<RelayArgs | 'help'> {
  const { values } = parseArgs({
    args: argv,
    options: {
      data: { type: 'string' },
      listen: { type: 'string', multiple: true },
      metrics: { type: 'string' },
      config: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      ...Object.fromEntries([...LIMIT_KEYS, ...MAILBOX_KEYS, ...PREKEY_KEYS].map(([, flag]) => [flag, { type: 'string' as const }]))
    },
    strict: true,
    allowPositionals: false
  })
  if (values.help === true) return 'help'
  const file: Raw = {}
  const configPath = values.config ?? env.PARLEY_RELAY_CONFIG
  if (configPath !== undefined) {
    let parsed: unknown
    try {
      parsed = JSON.parse(await readFile(configPath, 'utf8'))
    } catch (err) {
      throw new InvalidRequestError(`cannot read config file ${configPath}: ${(err as Error).message}`)
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new InvalidRequestError('config file must hold a JSON object')
    for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
      if (typeof v === 'string' || typeof v === 'number') file[k] = String(v)
      else if (Array.isArray(v) && v.every((x) => typeof x === 'string')) file[k] = v
      else throw new InvalidRequestError(`config key "${k}" must be a string, a number or a list of strings`)
    }
  }
  const pick = (flag: string): string | string[] | undefined => {
    const fromFlag = (values as Raw)[flag]
    if (fromFlag !== undefined) return fromFlag
    const fromEnv = env[`PARLEY_RELAY_${flag.toUpperCase().replace(/-/g, '_')}`]
    if (fromEnv !== undefined && fromEnv !== '') return flag === 'listen' ? fromEnv.split(',').map((s) => s.trim()) : fromEnv
    return file[flag]
  }
  const listenRaw = pick('listen')
  const listen = listenRaw === undefined ? ['/ip4/0.0.0.0/tcp/4001', '/ip4/0.0.0.0/tcp/4002/ws'] : Array.isArray(listenRaw) ? listenRaw : [listenRaw]
  for (const a of listen) {
    try {
      multiaddr(a)
    } catch {
      throw new InvalidRequestError(`not a multiaddr: ${a}`)
    }
  }
  const positive = (flag: string): number | undefined => {
    const v = pick(flag)
    if (v === undefined) return undefined
    const n = Number(v)
    if (Array.isArray(v) || !Number.isSafeInteger(n) || n <= 0) throw new InvalidRequestError(`--${flag} must be a positive integer`)
    return n
  }
  const limits = { ...DEFAULT_RELAY_LIMITS }
  for (const [key, flag] of LIMIT_KEYS) limits[key] = positive(flag) ?? limits[key]
  const mailbox = { ...DEFAULT_MAILBOX_LIMITS }
  for (const [key, flag] of MAILBOX_KEYS) mailbox[key] = positive(flag) ?? mailbox[key]
  const prekeys = { ...DEFAULT_PREKEY_LIMITS }
  for (const [key, flag] of PREKEY_KEYS) prekeys[key] = positive(flag) ?? prekeys[key]
  const dataRaw = pick('data')
  const metricsRaw = pick('metrics')
  return {
    dataDir: typeof dataRaw === 'string' ? dataRaw : join(homedir(), '.parley-relay'),
    listen,
    limits,
    mailbox,
    prekeys,
    ...(typeof metricsRaw === 'string' ? { metrics: parseHostPort(metricsRaw) } : {})
  }
}

function parseHostPort (value: string): { host: string, port: number } {
  const m = /^(.*):(\d+)$/.exec(value)
  const port = Number(m?.[2])
  if (m === null || m[1] === undefined || m[1] === '' || !Number.isInteger(port) || port > 65535) {
    throw new InvalidRequestError(`--metrics must be HOST:PORT, got ${value}`)
  }
  return { host: m[1].replace(/^\[|\]$/g, ''), port }
}

/** Structured logs: one JSON object per line on stderr. */
function logEvent (event: string, fields: Record<string, unknown> = {}): void {
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), event, ...fields }) + '\n')
}

/**
 * `parley relay`: start, print the ready line, serve until SIGTERM/SIGINT, then stop
 * cleanly. Returns the exit code.
 */
export async function main (argv: string[]): Promise<number> {
  let args: RelayArgs | 'help'
  try {
    args = await parseRelayArgs(argv)
  } catch (err) {
    process.stderr.write(`parley relay: ${(err as Error).message}\n${RELAY_USAGE}\n`)
    return 2
  }
  if (args === 'help') { process.stdout.write(RELAY_USAGE + '\n'); return 0 }

  let server: Server | undefined
  let node
  let store: MailboxStore | undefined
  let prekeyStore: PrekeyStore | undefined
  let mailbox: MailboxService
  let directory: DirectoryService
  let notifier: MailboxNotifier
  try {
    const privateKey = await loadOrCreateIdentity(args.dataDir)
    store = new MailboxStore(join(args.dataDir, 'mailbox'))
    await store.open()
    prekeyStore = new PrekeyStore(join(args.dataDir, 'prekeys'))
    await prekeyStore.open()
    node = await createRelayNode({ privateKey, listen: args.listen, limits: args.limits, prekeys: { store: prekeyStore, limits: args.prekeys } })
    notifier = new MailboxNotifier(node, store)
    const notify = notifier
    mailbox = new MailboxService(node, store, args.mailbox, Date.now, (recipients) => { for (const r of recipients) notify.notify(r) })
    await mailbox.start()
    notifier.start()
    directory = new DirectoryService(node)
    await directory.start()
    await node.start()
    if (args.metrics !== undefined) server = await serveMetrics(node, args.metrics.host, args.metrics.port, { store, mailbox, directory })
  } catch (err) {
    const e = describeError(err)
    process.stdout.write(JSON.stringify({ event: 'error', error: e }) + '\n')
    process.stderr.write(`parley relay: cannot start: ${e.name}: ${e.message}\n`)
    await node?.stop()
    await store?.close().catch(() => {})
    await prekeyStore?.close().catch(() => {})
    return 1
  }
  const addrs = node.getMultiaddrs().map((a) => a.toString())
  const metricsAddr = server?.address()
  const ready = {
    event: 'ready',
    peerId: node.peerId.toString(),
    addrs,
    ...(metricsAddr !== undefined && metricsAddr !== null && typeof metricsAddr === 'object' ? { metrics: `http://${metricsAddr.address}:${metricsAddr.port}` } : {})
  }
  process.stdout.write(JSON.stringify(ready) + '\n')
  logEvent('started', { peerId: ready.peerId, addrs, limits: args.limits, mailbox: args.mailbox, mailboxHolds: store.totals(), prekeys: args.prekeys, prekeysHold: prekeyStore.totals() })

  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve)
    process.once('SIGINT', resolve)
  })
  logEvent('stopping')
  await new Promise<void>((resolve) => { if (server === undefined) resolve(); else server.close(() => { resolve() }) })
  notifier.stop()
  await mailbox.stop()
  await directory.stop()
  await node.stop()
  await store.close()
  await prekeyStore.close()
  logEvent('stopped')
  return 0
}
