/**
 * One group fan-out run on its own (scenarios/group.ts, the same scenario `npm run bench`
 * runs), for iterating on the fan-out path without the whole bench:
 *   node dist/test/bench/fanout.js [--members 50] [--processes 5] [--messages 60] [--gap 500]
 * Defaults are the full bench's 50-member size. Prints the result as JSON. Peer processes
 * inherit this process's node flags, so `node --cpu-prof --cpu-prof-dir=DIR
 * dist/test/bench/fanout.js` profiles every member process.
 */
import '../../core/polyfill.js'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import { join } from 'node:path'
import { killAllPeers, ProcessPeer } from './process-peer.js'
import { runFanoutOnly, type GroupOptions, type GroupSize } from './scenarios/group.js'

function arg (name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`)
  if (i < 0) return fallback
  const v = Number(process.argv[i + 1])
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`)
  return v
}

async function main (): Promise<void> {
  const size: GroupSize = { members: arg('members', 50), processes: arg('processes', 5), messages: arg('messages', 60), gapMs: arg('gap', 500) }
  // As run.ts configures the full bench.
  const o: GroupOptions = {
    sizes: [size],
    warmupRounds: 1,
    warmupGapMs: 50,
    messageBytes: 100,
    catchUpMessages: 0,
    formTimeoutMs: 120_000,
    warmupTimeoutMs: 60_000,
    timeoutMs: 60_000
  }
  const dataRoot = await mkdtemp(join(os.tmpdir(), `parley-fanout-${process.pid}-`))
  process.on('exit', () => { killAllPeers() })
  try {
    const loadStart = os.loadavg()[0] ?? 0
    const r = await runFanoutOnly(async (name) => await ProcessPeer.spawn(`processes-${name}`), size, o, dataRoot, (line) => { console.error(line) })
    console.log(JSON.stringify({ loadStart, loadEnd: os.loadavg()[0] ?? 0, ...r }, null, 2))
  } finally {
    await rm(dataRoot, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 })
  }
}

main().then(
  () => { process.stdout.write('', () => { process.exit(0) }) },
  (err: unknown) => {
    console.error(err)
    process.exit(1)
  }
)
