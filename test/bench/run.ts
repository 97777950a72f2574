/**
 * The benchmark harness: `npm run bench` (or `node dist/test/bench/run.js [--quick]`).
 * Runs every scenario in one process on loopback, prints a table, writes JSON to
 * bench-results/ and (full runs) rewrites docs/benchmarks.md.
 *
 * Adding a scenario: put it in scenarios/<name>.ts as an async function taking options and
 * returning a result object, add its options to `configFor`, its result to
 * BenchResults.scenarios (report.ts) and its rows to the report.
 */
import '../../core/polyfill.js'
import { execFileSync } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import os from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { snapshot } from './memory.js'
import { renderMarkdown, renderText, type BenchResults, type MachineInfo } from './report.js'
import { runDm, type DmOptions } from './scenarios/dm.js'
import { runFloor, type FloorOptions } from './scenarios/floor.js'
import { evaluateTargets } from './targets.js'
import { now } from './util.js'

interface Args {
  quick: boolean
  docs: boolean
}

function parseArgs (argv: string[]): Args {
  const args: Args = { quick: false, docs: true }
  let docsFlag: boolean | undefined
  for (const a of argv) {
    if (a === '--quick') args.quick = true
    else if (a === '--docs') docsFlag = true
    else if (a === '--no-docs') docsFlag = false
    else if (a === '--help' || a === '-h') {
      console.log('usage: node dist/test/bench/run.js [--quick] [--docs | --no-docs]\n' +
        '  --quick    small N smoke run (skips rewriting docs/benchmarks.md unless --docs)\n' +
        '  --no-docs  do not rewrite docs/benchmarks.md')
      process.exit(0)
    } else {
      throw new Error(`unknown argument ${a} (try --help)`)
    }
  }
  args.docs = docsFlag ?? !args.quick
  return args
}

function configFor (quick: boolean): { floor: FloorOptions, dm: DmOptions } {
  const messageBytes = 100
  return quick
    ? {
        floor: { messageBytes, echoWarmup: 100, echoSamples: 500, throughputMessages: 5_000, coalesce: 64, timeoutMs: 30_000 },
        dm: { messageBytes, latencyWarmup: 50, latencySamples: 300, throughputMessages: 2_000, maxOutstanding: 2_000, timeoutMs: 30_000 }
      }
    : {
        floor: { messageBytes, echoWarmup: 500, echoSamples: 5_000, throughputMessages: 50_000, coalesce: 64, timeoutMs: 60_000 },
        dm: { messageBytes, latencyWarmup: 500, latencySamples: 5_000, throughputMessages: 20_000, maxOutstanding: 2_000, timeoutMs: 60_000 }
      }
}

function machineInfo (loadAvgStart: number): MachineInfo {
  const cpus = os.cpus()
  return {
    loadAvgStart,
    loadAvgEnd: os.loadavg()[0] ?? 0,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cpuCount: cpus.length,
    totalMemBytes: os.totalmem(),
    node: process.version,
    v8: process.versions.v8
  }
}

function revision (root: string): string {
  try {
    return execFileSync('git', ['describe', '--always', '--dirty'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  } catch {
    return 'unknown'
  }
}

/** The repository root: dist/test/bench/run.js -> three levels up from dist. */
function repoRoot (): string {
  const here = dirname(fileURLToPath(import.meta.url))
  return resolve(here, '..', '..', '..')
}

async function main (): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  const config = configFor(args.quick)
  const root = repoRoot()
  const startMem = snapshot()
  const loadAvgStart = os.loadavg()[0] ?? 0
  const t0 = now()
  const timestamp = new Date().toISOString()

  console.error(`floor: bare libp2p stream (${config.floor.echoSamples} echo samples, ${config.floor.throughputMessages} frames)...`)
  const floor = await runFloor(config.floor)
  console.error(`dm: two Messengers (${config.dm.latencySamples} latency samples, ${config.dm.throughputMessages} messages)...`)
  const dm = await runDm(config.dm)

  const results: BenchResults = {
    schema: 1,
    timestamp,
    revision: revision(root),
    quick: args.quick,
    durationMs: now() - t0,
    machine: machineInfo(loadAvgStart),
    config,
    scenarios: { floor, dm },
    targets: evaluateTargets(floor, dm),
    processMemory: { start: startMem, end: snapshot() }
  }

  console.log(renderText(results))

  const outDir = join(root, 'bench-results')
  await mkdir(outDir, { recursive: true })
  const json = JSON.stringify(results, null, 2) + '\n'
  const file = join(outDir, `bench-${timestamp.replace(/[:.]/g, '-')}.json`)
  await writeFile(file, json)
  await writeFile(join(outDir, 'latest.json'), json)
  console.log(`\nwrote ${file} and bench-results/latest.json`)
  if (args.docs) {
    await writeFile(join(root, 'docs', 'benchmarks.md'), renderMarkdown(results))
    console.log('wrote docs/benchmarks.md')
  }
}

main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
})
