import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createDispatcher } from '../../core/api/dispatcher.js'
import { createNodeMessenger, NODE_OPTIONS, nodeArgsFrom, startOrReport, UsageRequested, type NodeArgs } from '../../core/cli/node.js'
import { describeError, InvalidRequestError } from '../../core/errors.js'
import { ELECTRON_INSTALL_HINT, ELECTRON_MAIN, locateElectron, type ElectronBinary } from '../electron/locate.js'
import { WebShellServer } from './server.js'

export const WEB_USAGE = `usage: parley web [--data DIR] [--port N] [--listen MULTIADDR]... [--relay MULTIADDR]... [--name NAME] [--no-mdns]

Runs a Parley node (the options of "parley node") and serves the app to a browser on
http://127.0.0.1:<port> (--port; default any free port), with MessengerApi over a WebSocket.
Open the URL it prints: it carries this launch's access token. See docs/cli.md.`

/** The renderer's files: dist/renderer, built by Vite from app/renderer (this file runs from dist/app/web-shell). */
export const STATIC_DIR = fileURLToPath(new URL('../../renderer/', import.meta.url))

export interface WebArgs extends NodeArgs {
  port: number
}

export function parseWebArgs (argv: string[]): WebArgs {
  const { values } = parseArgs({
    args: argv,
    options: { ...NODE_OPTIONS, port: { type: 'string' } },
    strict: true,
    allowPositionals: false
  })
  const args = nodeArgsFrom(values)
  const port = values.port ?? '0'
  if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) throw new InvalidRequestError(`not a port (0-65535): ${port}`)
  return { ...args, port: Number(port) }
}

/** `parley web`: a node plus the web shell until SIGINT/SIGTERM. Returns the exit code. */
export async function main (argv: string[]): Promise<number> {
  return await run(argv, 'parley web', (url) => `parley web: open ${url} in a browser (Ctrl-C stops)`)
}

/**
 * `parley start` (`npm start`): the desktop app. Runs Electron on its compiled main process
 * (app/electron/main.ts) when the Electron binary is installed; where it is not (no network
 * to fetch it), says so in one line and runs the web shell instead.
 */
export async function startMain (argv: string[], electron: ElectronBinary = locateElectron()): Promise<number> {
  if (electron.found) return await runElectron(electron.path, argv)
  return await run(argv, 'parley start', (url) => electronUnavailableLine(electron.reason, url))
}

/** The one line `parley start` prints when it falls back to the web shell. */
export function electronUnavailableLine (reason: string, url: string): string {
  return `parley: the Electron desktop app is not available here (${reason}; ${ELECTRON_INSTALL_HINT}); starting the web shell instead: ${url}`
}

/** Electron on our main process with the user's options; its exit code is ours. */
async function runElectron (electronPath: string, argv: string[]): Promise<number> {
  const env = { ...process.env }
  delete env.ELECTRON_RUN_AS_NODE // would make Electron a plain Node, not the app
  const child = spawn(electronPath, [ELECTRON_MAIN, ...argv], { stdio: 'inherit', env })
  const forward = (signal: NodeJS.Signals): void => { child.kill(signal) }
  process.on('SIGINT', forward)
  process.on('SIGTERM', forward)
  try {
    return await new Promise<number>((resolve) => {
      child.once('error', (err) => {
        process.stderr.write(`parley start: cannot run Electron (${electronPath}): ${err.message}\n`)
        resolve(1)
      })
      child.once('exit', (code, signal) => { resolve(code ?? (signal !== null ? 1 : 0)) })
    })
  } finally {
    process.off('SIGINT', forward)
    process.off('SIGTERM', forward)
  }
}

async function run (argv: string[], program: string, announce: (url: string) => string): Promise<number> {
  let args: WebArgs
  try {
    args = parseWebArgs(argv)
  } catch (err) {
    if (err instanceof UsageRequested) { process.stdout.write(WEB_USAGE + '\n'); return 0 }
    process.stderr.write(`${program}: ${(err as Error).message}\n${WEB_USAGE}\n`)
    return 2
  }
  const shutdown = new Promise<void>((resolve) => {
    process.once('SIGTERM', () => { resolve() })
    process.once('SIGINT', () => { resolve() })
  })
  const messenger = createNodeMessenger(args)
  if (!await startOrReport(messenger, program)) return 1
  const web = new WebShellServer({ dispatch: createDispatcher(messenger), on: (l) => messenger.on(l) }, { staticDir: STATIC_DIR, port: args.port })
  try {
    await web.start()
  } catch (err) {
    const e = describeError(err)
    process.stdout.write(JSON.stringify({ event: 'error', error: e }) + '\n')
    process.stderr.write(`${program}: cannot start: ${e.name}: ${e.message}\n`)
    await messenger.stop()
    return 1
  }
  const me = messenger.whoami()
  // The human line first: whoever sees the ready line can count on it being there.
  process.stderr.write(announce(web.url) + '\n')
  process.stdout.write(JSON.stringify({ event: 'ready', peerId: me.peerId, url: web.url, addrs: me.addrs, invite: me.invite }) + '\n')

  await shutdown
  await web.stop()
  await messenger.stop()
  return 0
}
