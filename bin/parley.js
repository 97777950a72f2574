#!/usr/bin/env node
// The `parley` command: routes a subcommand to the area that owns it. Plain JS so it runs
// before anything is compiled; the areas live in dist/ (built by `npm install`/`npm run build`).
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const dist = fileURLToPath(new URL('../dist/', import.meta.url))
// command -> [module in dist/, its entry function (argv) => exit code]
const commands = {
  node: ['core/cli/node.js', 'main'],
  relay: ['relay/cli.js', 'main'],
  web: ['app/web-shell/cli.js', 'main'],
  // The Electron desktop app where its binary is installed; otherwise it says so and runs the web shell.
  start: ['app/web-shell/cli.js', 'startMain']
}
const usage = `usage: parley <command> [options]

commands:
  start    start Parley: the desktop app (Electron), or where its binary is not installed
           the web shell (data in ~/.parley; open the URL it prints)
  web      the app in a browser: a node plus a web server on 127.0.0.1 (docs/cli.md)
  node     headless node speaking JSON lines on stdin/stdout (docs/cli.md)
  relay    relay node for operators: bootstrap and circuit relay (docs/relay.md)

Run "parley <command> --help" for a command's options.`

const [cmd, ...rest] = process.argv.slice(2)
if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
  console.log(usage)
  process.exit(cmd === undefined ? 2 : 0)
}
const [target, entry] = Object.hasOwn(commands, cmd) ? commands[cmd] : []
if (target === undefined) {
  console.error(`parley: unknown command "${cmd}"\n${usage}`)
  process.exit(2)
}
if (!existsSync(dist + target)) {
  console.error('parley: not built yet; run "npm install" (or "npm run build") first')
  process.exit(1)
}
await import(dist + 'core/polyfill.js')
const mod = await import(dist + target)
process.exitCode = await mod[entry](rest)
