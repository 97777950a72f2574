/**
 * `npm run sim`: the chaos simulation (chaos.ts) at full size, by default RELIABILITY.md's
 * "kill -9 and restart 30% of 20 peers at random during 10,000 DMs", then the same with 20
 * members of one group writing 2,000 group messages:
 *   node dist/test/sim/run.js [--scenario dm|group|both] [--peers 20] [--messages N]
 *     [--kill 0.3] [--kill-every 2000] [--down-min 500] [--down-max 4000] [--contacts 4]
 *     [--gap 0] [--seed N] [--settle 300000]
 * (--messages defaults to 10,000 for dm and 2,000 for group.) Prints progress on stderr and
 * the reports as JSON on stdout, writes them to bench-results/chaos-<time>.json and
 * bench-results/chaos-latest.json, and exits 1 if a message was lost, shown twice or out of
 * order, members disagree, or not every one settled.
 */
import '../../core/polyfill.js'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Cluster, REPO_ROOT } from '../helpers/node-process.js'
import { runChaos, type ChaosOptions, type ChaosReport, type ChaosScenario } from './chaos.js'

function arg (name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`)
  if (i < 0) return fallback
  const v = Number(process.argv[i + 1])
  if (!Number.isFinite(v) || v < 0) throw new Error(`--${name} needs a number >= 0`)
  return v
}

function scenarios (): ChaosScenario[] {
  const i = process.argv.indexOf('--scenario')
  const v = i < 0 ? 'both' : process.argv[i + 1]
  if (v === 'both') return ['dm', 'group']
  if (v === 'dm' || v === 'group') return [v]
  throw new Error('--scenario is dm, group or both')
}

async function main (): Promise<number> {
  const started = Date.now()
  const log = (line: string): void => { console.error(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${line}`) }
  const runs: Array<{ options: Omit<ChaosOptions, 'log'> & { log: undefined }, report: ChaosReport }> = []
  let ok = true
  for (const scenario of scenarios()) {
    const o: ChaosOptions = {
      scenario,
      peers: arg('peers', 20),
      messages: arg('messages', scenario === 'dm' ? 10_000 : 2_000),
      killFraction: arg('kill', 0.3),
      killEveryMs: arg('kill-every', 2000),
      downMs: { min: arg('down-min', 500), max: arg('down-max', 4000) },
      contactsPerPeer: arg('contacts', 4),
      sendGapMs: arg('gap', 0),
      seed: arg('seed', started % 1_000_000),
      settleTimeoutMs: arg('settle', 300_000),
      log: (line) => { log(`${scenario}: ${line}`) }
    }
    const cluster = new Cluster()
    const stop = (): void => { void cluster.cleanup().finally(() => process.exit(130)) }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
    try {
      const report = await runChaos(o, cluster)
      runs.push({ options: { ...o, log: undefined }, report })
      const good = report.settled && report.lost === 0 && report.shownTwice === 0 && report.outOfOrder === 0 && report.divergent === 0 && report.notDeliveredAtSender === 0
      log(good ? `${scenario}: nothing lost, nothing shown twice, order kept` : `${scenario}: FAILED: ${report.problems.join('; ')}`)
      ok &&= good
    } finally {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
      await cluster.cleanup()
    }
  }
  const json = JSON.stringify({ date: new Date(started).toISOString(), node: process.version, runs }, null, 2)
  console.log(json)
  const outDir = join(REPO_ROOT, 'bench-results')
  await mkdir(outDir, { recursive: true })
  await writeFile(join(outDir, `chaos-${new Date(started).toISOString().replace(/[:.]/g, '-')}.json`), json)
  await writeFile(join(outDir, 'chaos-latest.json'), json)
  return ok ? 0 : 1
}

main().then(
  (code) => { process.exitCode = code },
  (err: unknown) => {
    console.error(err)
    process.exitCode = 1
  }
)
