#!/usr/bin/env node
// The `parley` command: routes a subcommand to the area that owns it. Plain JS so it runs
// before anything is compiled; the areas live in dist/ (built by `npm install`/`npm run build`).
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const dist = fileURLToPath(new URL('../dist/', import.meta.url))
const commands = {
  node: 'core/cli/node.js',
  relay: 'relay/cli.js',
  // Until the desktop app lands, `start` runs a headless node in this terminal.
  start: 'core/cli/node.js'
}
const usage = `usage: parley <command> [options]

commands:
  start    start Parley (for now: a headless node in this terminal, data in ~/.parley)
  node     headless node speaking JSON lines on stdin/stdout (docs/cli.md)
  relay    relay node for operators: bootstrap and circuit relay (docs/relay.md)

Run "parley <command> --help" for a command's options.`

const [cmd, ...rest] = process.argv.slice(2)
if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
  console.log(usage)
  process.exit(cmd === undefined ? 2 : 0)
}
const target = commands[cmd]
if (target === undefined) {
  console.error(`parley: unknown command "${cmd}"\n${usage}`)
  process.exit(2)
}
if (!existsSync(dist + target)) {
  console.error('parley: not built yet; run "npm install" (or "npm run build") first')
  process.exit(1)
}
if (cmd === 'start') {
  console.error('parley: the desktop app is not part of this build yet; starting a headless node.')
  console.error('parley: type JSON commands, one per line, e.g. {"id":1,"cmd":"whoami"} (see docs/cli.md); Ctrl-D quits.')
}
await import(dist + 'core/polyfill.js')
const mod = await import(dist + target)
process.exitCode = await mod.main(rest)
