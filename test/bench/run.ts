/**
 * The benchmark harness: `npm run bench` (or `node dist/test/bench/run.js [--quick]`).
 *
 * Primary figures: each node in its own OS process. For each scenario the harness forks two
 * peer processes (peer-process.ts, via ProcessPeer) and drives them over IPC; the peers time
 * everything themselves on a clock they share (util.ts sharedNow) and the harness subtracts.
 * Secondary figures (unless --no-one-process): the same scenario code with both peers in this
 * process, sharing one JS thread, as the harness measured before.
 *
 * Prints a table, writes JSON to bench-results/ and (full runs) rewrites docs/benchmarks.md.
 * Peer processes are killed and the temp data directory removed however the run ends.
 *
 * Adding a scenario: put the per-peer side in scenarios/<name>-peer.ts, expose its calls in
 * peer.ts (PeerMethods + PeerHost.handlers), write the orchestration in scenarios/<name>.ts
 * against PeerHandle, add its options to `configFor`, its result to ModeResults (report.ts)
 * and its rows to the report.
 *
 * End-to-end encryption: the two-process DM scenario runs twice, with E2EE (the primary DM
 * figures) and with `benchmarkWithoutE2ee` on both ends (same code, same counts), so the
 * report can show what E2EE adds; and scenarios/crypto.ts measures encrypt + decrypt per
 * message in one fresh process, without the network.
 *
 * The relay scenarios (scenarios/relay.ts) run after the two-process floor and DM, in the same
 * run: a relay process, client processes and (for the memory figure) swarm processes.
 *
 * The group scenarios (scenarios/group.ts, issue 5) run last: a relay process with the peer
 * directory, member processes hosting several Messengers each (fan-out to 10 and 50 members),
 * a two-member catch-up of many missed messages, and the caught-up group opened in a fresh
 * process for its memory.
 */
import '../../core/polyfill.js'
import { execFileSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { checkClocks, type ClockCheck } from './clock.js'
import { LocalPeer, type PeerHandle } from './peer.js'
import { killAllPeers, killAllPeersAndWait, ProcessPeer } from './process-peer.js'
import { renderMarkdown, renderText, textTable, type BenchConfig, type BenchResults, type MachineInfo, type ModeResults } from './report.js'
import { runCrypto, type CryptoResult } from './scenarios/crypto.js'
import { runDm } from './scenarios/dm.js'
import { runFloor } from './scenarios/floor.js'
import { runGroups, type GroupResult } from './scenarios/group.js'
import { textCatchUp } from './report-group.js'
import { runRelay, type RelayResult } from './scenarios/relay.js'
import { evaluateTargets } from './targets.js'
import { now } from './util.js'

interface Args {
  quick: boolean
  docs: boolean
  oneProcess: boolean
  groupCatchUp: boolean
}

function parseArgs (argv: string[]): Args {
  const args: Args = { quick: false, docs: true, oneProcess: true, groupCatchUp: false }
  let docsFlag: boolean | undefined
  for (const a of argv) {
    if (a === '--quick') args.quick = true
    else if (a === '--docs') docsFlag = true
    else if (a === '--no-docs') docsFlag = false
    else if (a === '--no-one-process') args.oneProcess = false
    else if (a === '--group-catch-up') args.groupCatchUp = true
    else if (a === '--help' || a === '-h') {
      console.log('usage: node dist/test/bench/run.js [--quick] [--docs | --no-docs] [--no-one-process] [--group-catch-up]\n' +
        '  --quick           small N smoke run (skips rewriting docs/benchmarks.md unless --docs)\n' +
        '  --no-docs         do not rewrite docs/benchmarks.md\n' +
        '  --no-one-process  skip the secondary run with both nodes in this process\n' +
        '  --group-catch-up  only the group catch-up and memory scenarios, same options (prints them; writes nothing)')
      process.exit(0)
    } else {
      throw new Error(`unknown argument ${a} (try --help)`)
    }
  }
  args.docs = docsFlag ?? (!args.quick && !args.groupCatchUp)
  return args
}

function configFor (quick: boolean): BenchConfig {
  const messageBytes = 100
  const groupCommon = { warmupRounds: 1, warmupGapMs: 50, messageBytes }
  const relayCommon = { batchSize: 32, sealBatch: 500, depositParallel: 4, drainLimit: 256, dmMessageBytes: messageBytes, swarmParallel: 2, rssPeers: 1_000, floodProcesses: 2, floodDialers: 4, floodSilentSockets: 100, floodStreams: 16, floodHold: 100 }
  return quick
    ? {
        floor: { messageBytes, echoWarmup: 100, echoSamples: 500, throughputMessages: 5_000, coalesce: 64, timeoutMs: 30_000 },
        dm: { messageBytes, latencyWarmup: 50, latencySamples: 300, roundTripSamples: 300, throughputMessages: 2_000, maxOutstanding: 2_000, timeoutMs: 30_000 },
        crypto: { messageBytes, warmup: 50, samples: 300, timeoutMs: 30_000 },
        relay: { ...relayCommon, deposits: 1_000, dmWarmup: 20, dmSamples: 200, swarmPeers: 100, swarmProcesses: 2, timeoutMs: 30_000 },
        group: { ...groupCommon, sizes: [{ members: 10, processes: 2, messages: 50, gapMs: 100 }], catchUpMessages: 200, formTimeoutMs: 60_000, warmupTimeoutMs: 30_000, timeoutMs: 30_000 }
      }
    : {
        floor: { messageBytes, echoWarmup: 500, echoSamples: 5_000, throughputMessages: 50_000, coalesce: 64, timeoutMs: 60_000 },
        dm: { messageBytes, latencyWarmup: 500, latencySamples: 5_000, roundTripSamples: 5_000, throughputMessages: 50_000, maxOutstanding: 2_000, timeoutMs: 60_000 },
        crypto: { messageBytes, warmup: 500, samples: 5_000, timeoutMs: 60_000 },
        relay: { ...relayCommon, deposits: 10_000, dmWarmup: 200, dmSamples: 2_000, swarmPeers: 1_000, swarmProcesses: 4, timeoutMs: 60_000 },
        group: {
          ...groupCommon,
          sizes: [{ members: 10, processes: 2, messages: 200, gapMs: 100 }, { members: 50, processes: 5, messages: 60, gapMs: 500 }],
          catchUpMessages: 10_000,
          formTimeoutMs: 120_000,
          warmupTimeoutMs: 60_000,
          timeoutMs: 60_000
        }
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

const DATA_ROOT_PREFIX = 'parley-bench-'

/**
 * Remove data directories left by earlier runs that were killed outright (SIGKILL leaves no
 * chance to clean up): those named after a process id that no longer exists.
 */
async function removeStaleDataRoots (): Promise<void> {
  const tmp = os.tmpdir()
  for (const name of await readdir(tmp)) {
    const m = new RegExp(`^${DATA_ROOT_PREFIX}(\\d+)-`).exec(name)
    if (m === null) continue
    const pid = Number(m[1])
    if (pid === process.pid || alive(pid)) continue
    await rm(join(tmp, name), { recursive: true, force: true }).catch(() => {})
  }
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Run `fn` with a fresh pair of peer processes, closed (or killed) afterwards. */
async function withProcessPair<T> (scenario: string, fn: (a: ProcessPeer, b: ProcessPeer) => Promise<T>): Promise<T> {
  const peers: ProcessPeer[] = []
  try {
    peers.push(await ProcessPeer.spawn(`processes-${scenario}-A`))
    peers.push(await ProcessPeer.spawn(`processes-${scenario}-B`))
    const [a, b] = peers as [ProcessPeer, ProcessPeer]
    return await fn(a, b)
  } finally {
    await Promise.allSettled(peers.map(async (p) => { await p.close() }))
  }
}

/** Run `fn` with a pair of peers in this process. */
async function withLocalPair<T> (scenario: string, fn: (a: PeerHandle, b: PeerHandle) => Promise<T>): Promise<T> {
  const a = new LocalPeer(`one-process-${scenario}-A`)
  const b = new LocalPeer(`one-process-${scenario}-B`)
  try {
    return await fn(a, b)
  } finally {
    await Promise.allSettled([a.close(), b.close()])
  }
}

async function runProcesses (config: BenchConfig, dataRoot: string): Promise<ModeResults> {
  const clocks: ClockCheck[] = []
  const pids: Record<string, number[]> = {}
  console.error(`floor, two processes: bare libp2p stream (${config.floor.echoSamples} echo samples, ${config.floor.throughputMessages} frames x2)...`)
  const floor = await withProcessPair('floor', async (a, b) => {
    pids.floor = [a.pid, b.pid]
    clocks.push(await checkClocks('floor, before', a, b))
    const r = await runFloor(a, b, config.floor)
    clocks.push(await checkClocks('floor, after', a, b))
    return r
  })
  const dmRun = async (plain: boolean): Promise<ModeResults['dm']> => {
    const name = plain ? 'dm-plain' : 'dm'
    console.error(`${name}, two processes: two Messengers${plain ? ' without E2EE (benchmarkWithoutE2ee)' : ' (E2EE)'} (${config.dm.latencySamples} one-way + ${config.dm.roundTripSamples} round-trip samples, ${config.dm.throughputMessages} messages)...`)
    return await withProcessPair(name, async (a, b) => {
      pids[name] = [a.pid, b.pid]
      clocks.push(await checkClocks(`${name}, before`, a, b))
      const r = await runDm(a, b, config.dm, { dataRoot, sharedProcess: false, plain })
      clocks.push(await checkClocks(`${name}, after`, a, b))
      return r
    })
  }
  const dm = await dmRun(false)
  const dmPlain = await dmRun(true)
  return { mode: 'processes', floor, dm, dmPlain, clocks, pids }
}

/** Encrypt + decrypt per message, in one fresh peer process (no network). */
async function runCryptoScenario (config: BenchConfig, dataRoot: string): Promise<CryptoResult> {
  console.error(`crypto, one fresh process: two SignalCiphers over LevelStores (${config.crypto.samples} messages x 3 phases)...`)
  const peer = await ProcessPeer.spawn('processes-crypto')
  try {
    return await runCrypto(peer, config.crypto, dataRoot)
  } finally {
    await peer.close()
  }
}

/** The group scenarios: a relay process and member processes (several Messengers each), closed afterwards. */
async function runGroupScenarios (config: BenchConfig, dataRoot: string): Promise<GroupResult> {
  return await runGroups(async (name) => await ProcessPeer.spawn(`processes-${name}`), config.group, dataRoot, (line) => { console.error(line) })
}

/** The relay scenarios: relay, clients and swarms each in their own process, closed afterwards. */
async function runRelayScenarios (config: BenchConfig, dataRoot: string): Promise<RelayResult> {
  return await runRelay(async (name) => await ProcessPeer.spawn(`processes-${name}`), config.relay, dataRoot, (line) => { console.error(line) })
}

async function runOneProcess (config: BenchConfig, dataRoot: string): Promise<ModeResults> {
  console.error('floor, one process (secondary)...')
  const floor = await withLocalPair('floor', async (a, b) => await runFloor(a, b, config.floor))
  console.error('dm, one process (secondary)...')
  const dm = await withLocalPair('dm', async (a, b) => await runDm(a, b, config.dm, { dataRoot, sharedProcess: true }))
  return { mode: 'one-process', floor, dm, clocks: [], pids: { floor: [process.pid], dm: [process.pid] } }
}

async function main (): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  const config = configFor(args.quick)
  const root = repoRoot()
  const loadAvgStart = os.loadavg()[0] ?? 0
  const t0 = now()
  const timestamp = new Date().toISOString()

  await removeStaleDataRoots()
  const dataRoot = await mkdtemp(join(os.tmpdir(), `${DATA_ROOT_PREFIX}${process.pid}-`))
  // However the run ends (error, exit, Ctrl-C, kill): no peer process and no temp dir left
  // behind. A signal first waits for the killed peers to be gone, so none is still writing
  // into the directory while it is removed; the 'exit' handler is the synchronous last resort.
  process.on('exit', () => {
    killAllPeers()
    try {
      rmSync(dataRoot, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 })
    } catch (err) {
      console.error(`could not remove ${dataRoot}:`, err)
    }
  })
  const onSignal = (code: number): void => {
    killAllPeersAndWait().then(
      () => { process.exit(code) },
      (err: unknown) => {
        console.error(err)
        process.exit(code)
      }
    )
  }
  process.once('SIGINT', () => { onSignal(130) })
  process.once('SIGTERM', () => { onSignal(143) })
  process.once('SIGHUP', () => { onSignal(129) })

  if (args.groupCatchUp) {
    // The same catch-up and memory scenarios as the full run (same counts and timing points), without the fan-out sizes.
    const group = await runGroups(async (name) => await ProcessPeer.spawn(`processes-${name}`), { ...config.group, sizes: [] }, dataRoot, (line) => { console.error(line) })
    console.log(textCatchUp(group, textTable).join('\n'))
    return
  }

  const processes = await runProcesses(config, dataRoot)
  const crypto = await runCryptoScenario(config, dataRoot)
  const relay = await runRelayScenarios(config, dataRoot)
  const group = await runGroupScenarios(config, dataRoot)
  const oneProcess = args.oneProcess ? await runOneProcess(config, dataRoot) : undefined

  const results: BenchResults = {
    schema: 5,
    timestamp,
    revision: revision(root),
    quick: args.quick,
    durationMs: now() - t0,
    machine: machineInfo(loadAvgStart),
    config,
    processes,
    crypto,
    relay,
    group,
    ...(oneProcess !== undefined ? { oneProcess } : {}),
    targets: evaluateTargets(processes.floor, processes.dm, relay, processes.dmPlain !== undefined ? { plain: processes.dmPlain, crypto } : undefined, group)
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

// Exit explicitly (once stdout is flushed): a handle some library left open must not keep
// the harness, and so its 'exit' clean-up, waiting.
main().then(
  () => { process.stdout.write('', () => { process.exit(0) }) },
  (err: unknown) => {
    console.error(err)
    process.exit(1)
  }
)
