/**
 * `npm run sim`: the chaos simulation (chaos.ts) at full size, by default RELIABILITY.md's
 * "kill -9 and restart 30% of 20 peers at random during 10,000 DMs":
 *   node dist/test/sim/run.js [--peers 20] [--messages 10000] [--kill 0.3] [--kill-every 2000]
 *     [--down-min 500] [--down-max 4000] [--contacts 4] [--gap 0] [--seed N] [--settle 300000]
 * Prints progress on stderr and the report as JSON on stdout, writes it to
 * bench-results/chaos-<time>.json and bench-results/chaos-latest.json, and exits 1 if a
 * message was lost, shown twice or out of order, or not every one settled.
 */
import '../../core/polyfill.js'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Cluster, REPO_ROOT } from '../helpers/node-process.js'
import { runChaos, type ChaosOptions } from './chaos.js'

function arg (name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`)
  if (i < 0) return fallback
  const v = Number(process.argv[i + 1])
  if (!Number.isFinite(v) || v < 0) throw new Error(`--${name} needs a number >= 0`)
  return v
}

async function main (): Promise<number> {
  const started = Date.now()
  const o: ChaosOptions = {
    peers: arg('peers', 20),
    messages: arg('messages', 10_000),
    killFraction: arg('kill', 0.3),
    killEveryMs: arg('kill-every', 2000),
    downMs: { min: arg('down-min', 500), max: arg('down-max', 4000) },
    contactsPerPeer: arg('contacts', 4),
    sendGapMs: arg('gap', 0),
    seed: arg('seed', started % 1_000_000),
    settleTimeoutMs: arg('settle', 300_000),
    log: (line) => { console.error(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${line}`) }
  }
  const cluster = new Cluster()
  const stop = (): void => { void cluster.cleanup().finally(() => process.exit(130)) }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  try {
    const report = await runChaos(o, cluster)
    const json = JSON.stringify({ date: new Date(started).toISOString(), node: process.version, options: { ...o, log: undefined }, report }, null, 2)
    console.log(json)
    const outDir = join(REPO_ROOT, 'bench-results')
    await mkdir(outDir, { recursive: true })
    await writeFile(join(outDir, `chaos-${new Date(started).toISOString().replace(/[:.]/g, '-')}.json`), json)
    await writeFile(join(outDir, 'chaos-latest.json'), json)
    const ok = report.settled && report.lost === 0 && report.shownTwice === 0 && report.outOfOrder === 0
    console.error(ok ? 'chaos: nothing lost, nothing shown twice, order kept' : `chaos: FAILED: ${report.problems.join('; ')}`)
    return ok ? 0 : 1
  } finally {
    await cluster.cleanup()
  }
}

main().then(
  (code) => { process.exitCode = code },
  (err: unknown) => {
    console.error(err)
    process.exitCode = 1
  }
)
