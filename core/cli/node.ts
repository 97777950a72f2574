import { homedir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { multiaddr } from '@multiformats/multiaddr'
import type { MessengerEvent } from '../api/contract.js'
import { serveJsonLines } from '../api/stdio.js'
import { describeError, InvalidRequestError } from '../errors.js'
import { Messenger } from '../messenger.js'
import { DEFAULT_LISTEN } from '../net/node.js'
import { parseRelayAddr } from '../net/relays.js'

export const NODE_USAGE = `usage: parley node --data DIR [--listen MULTIADDR]... [--relay MULTIADDR]... [--name NAME] [--no-mdns]

Runs a headless Parley node speaking MessengerApi as JSON lines on stdin/stdout.
See docs/cli.md for every command and event.`

export interface NodeArgs {
  dataDir: string
  listen: string[]
  relays: string[]
  name?: string
  mdns: boolean
}

/** The options `parley node` takes; other commands that run a node (`parley web`) extend them. */
export const NODE_OPTIONS = {
  data: { type: 'string' },
  listen: { type: 'string', multiple: true },
  relay: { type: 'string', multiple: true },
  name: { type: 'string' },
  'no-mdns': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' }
} as const

/** What parseArgs gives for NODE_OPTIONS. */
export interface NodeOptionValues {
  data?: string
  listen?: string[]
  relay?: string[]
  name?: string
  'no-mdns'?: boolean
  help?: boolean
}

export function parseNodeArgs (argv: string[]): NodeArgs {
  const { values } = parseArgs({ args: argv, options: NODE_OPTIONS, strict: true, allowPositionals: false })
  return nodeArgsFrom(values)
}

/** Checks parsed NODE_OPTIONS and fills in defaults. Throws UsageRequested for --help. */
export function nodeArgsFrom (values: NodeOptionValues): NodeArgs {
  if (values.help === true) throw new UsageRequested()
  const listen = values.listen ?? DEFAULT_LISTEN
  const relays = values.relay ?? []
  for (const a of listen) {
    try {
      multiaddr(a)
    } catch {
      throw new InvalidRequestError(`not a multiaddr: ${a}`)
    }
  }
  for (const r of relays) parseRelayAddr(r)
  return {
    dataDir: values.data ?? join(homedir(), '.parley'),
    listen,
    relays,
    ...(values.name !== undefined ? { name: values.name } : {}),
    mdns: values['no-mdns'] !== true
  }
}

export class UsageRequested extends Error {
  static override name = 'UsageRequested'
  override name = 'UsageRequested'
}

/**
 * `parley node`: start, print the ready line, serve JSON lines until stdin ends or SIGTERM,
 * then stop cleanly (the outbox stays on disk for the next start). Returns the exit code.
 */
export async function main (argv: string[]): Promise<number> {
  let args: NodeArgs
  try {
    args = parseNodeArgs(argv)
  } catch (err) {
    if (err instanceof UsageRequested) { process.stdout.write(NODE_USAGE + '\n'); return 0 }
    process.stderr.write(`parley node: ${(err as Error).message}\n${NODE_USAGE}\n`)
    return 2
  }
  const messenger = createNodeMessenger(args)
  const early: MessengerEvent[] = []
  const offEarly = messenger.on((e) => { early.push(e) })
  if (!await startOrReport(messenger, 'parley node')) return 1
  const me = messenger.whoami()
  process.stdout.write(JSON.stringify({ event: 'ready', peerId: me.peerId, addrs: me.addrs, invite: me.invite }) + '\n')

  let stopping: Promise<void> | undefined
  const stop = async (): Promise<void> => {
    stopping ??= messenger.stop()
    await stopping
  }
  const shutdown = new AbortController()
  const onSignal = (): void => { shutdown.abort() }
  process.once('SIGTERM', onSignal)
  process.once('SIGINT', onSignal)

  const served = serveJsonLines(messenger, process.stdin, process.stdout, shutdown.signal)
  offEarly()
  for (const e of early) process.stdout.write(JSON.stringify(e) + '\n')
  await served.catch(() => {})
  await stop()
  process.stdin.destroy()
  return 0
}

export function createNodeMessenger (args: NodeArgs): Messenger {
  return new Messenger({
    dataDir: args.dataDir,
    listen: args.listen,
    mdns: args.mdns,
    relays: args.relays,
    ...(args.name !== undefined ? { name: args.name } : {})
  })
}

/**
 * Starts the Messenger; if it cannot start (e.g. DataDirLockedError), prints the reason as an
 * `{"event":"error"}` line on stdout and a human line on stderr, and resolves false (exit 1).
 */
export async function startOrReport (messenger: Messenger, program: string): Promise<boolean> {
  try {
    await messenger.start()
    return true
  } catch (err) {
    const e = describeError(err)
    process.stdout.write(JSON.stringify({ event: 'error', error: e }) + '\n')
    process.stderr.write(`${program}: cannot start: ${e.name}: ${e.message}\n`)
    return false
  }
}
