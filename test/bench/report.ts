/**
 * Turns one run's results into the stdout table and docs/benchmarks.md. Everything in the
 * markdown is generated from the results object: no figure is written by hand.
 */
import type { MemorySnapshot } from './memory.js'
import { mib } from './memory.js'
import type { DmOptions, DmResult } from './scenarios/dm.js'
import type { FloorOptions, FloorResult } from './scenarios/floor.js'
import { round, type LatencySummary } from './stats.js'
import { signedMib, type TargetCheck } from './targets.js'

export interface MachineInfo {
  os: string
  cpuModel: string
  cpuCount: number
  totalMemBytes: number
  node: string
  v8: string
  /** 1-minute load average when the run started and ended: a busy machine skews p99/max. */
  loadAvgStart: number
  loadAvgEnd: number
}

export interface BenchResults {
  schema: 1
  timestamp: string
  /** `git describe --always --dirty` of the tree that was measured, if available. */
  revision: string
  quick: boolean
  durationMs: number
  machine: MachineInfo
  config: { floor: FloorOptions, dm: DmOptions }
  scenarios: { floor: FloorResult, dm: DmResult }
  targets: TargetCheck[]
  processMemory: { start: MemorySnapshot, end: MemorySnapshot }
}

const fmtMs = (n: number): string => Number.isFinite(n) ? round(n, 3).toFixed(3) : 'n/a'
const fmtRate = (n: number): string => Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a'
const fmtMib = (bytes: number): string => `${mib(bytes)} MiB`

function latencyRow (label: string, s: LatencySummary): string[] {
  return [label, fmtMs(s.p50), fmtMs(s.p90), fmtMs(s.p99), fmtMs(s.max), String(s.samples)]
}

function latencyRows (r: BenchResults): string[][] {
  const { floor, dm } = r.scenarios
  return [
    latencyRow('Floor: echo RTT (bare stream)', floor.echoRtt),
    latencyRow('Floor: one-way estimate (RTT/2)', floor.oneWayEstimate),
    latencyRow('DM: sendText -> B message event', dm.latency.toReceived),
    latencyRow('DM: sendText -> promise resolved', dm.latency.toSendResolved),
    latencyRow('DM: sendText -> A delivered event', dm.latency.toDelivered)
  ]
}

function throughputRows (r: BenchResults): string[][] {
  const { floor, dm } = r.scenarios
  const tp = dm.throughput
  const fl = (label: string, t: FloorResult['throughput']): string[] =>
    [label, fmtRate(t.msgsPerSec), String(t.messages), fmtMs(t.elapsedMs)]
  return [
    fl('Floor: 1 frame per stream.send', floor.throughput),
    fl(`Floor: ${floor.throughputCoalesced.framesPerSend} frames per stream.send`, floor.throughputCoalesced),
    ['DM: received by B', fmtRate(tp.receivedPerSec), `${tp.received}/${tp.messages}`, fmtMs(tp.receivedMs)],
    ['DM: delivered (acked) at A', fmtRate(tp.deliveredPerSec), `${tp.delivered}/${tp.messages}`, fmtMs(tp.deliveredMs)],
    ['DM: sendText resolved (enqueued)', fmtRate(tp.enqueuePerSec), String(tp.messages), fmtMs(tp.enqueueMs)]
  ]
}

function memoryRows (r: BenchResults): string[][] {
  const m = r.scenarios.dm.memory
  return [
    ['Before throughput run (after GC)', fmtMib(m.before.rssBytes), fmtMib(m.before.heapUsedBytes)],
    ['Peak during throughput run', fmtMib(m.peakRssBytes), fmtMib(m.peakHeapUsedBytes)],
    ['Right after (no GC)', fmtMib(m.afterNoGc.rssBytes), fmtMib(m.afterNoGc.heapUsedBytes)],
    ['After (after GC)', fmtMib(m.after.rssBytes), fmtMib(m.after.heapUsedBytes)],
    ['Delta (after GC - before)', signedMib(m.deltaRssBytes), signedMib(m.deltaHeapUsedBytes)]
  ]
}

function textTable (head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)).join('  ')
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

function mdTable (head: string[], rows: string[][], align?: string[]): string {
  const sep = head.map((_h, i) => align?.[i] ?? (i === 0 ? ':--' : '--:'))
  const esc = (c: string): string => c.replace(/\|/g, '\\|')
  return [head, sep, ...rows].map((r) => `| ${r.map(esc).join(' | ')} |`).join('\n')
}

const LAT_HEAD = ['Latency (ms)', 'p50', 'p90', 'p99', 'max', 'samples']
const TP_HEAD = ['Throughput, one way', 'msg/s', 'messages', 'elapsed ms']
const MEM_HEAD = ['Memory (whole process)', 'RSS', 'heapUsed']
const TGT_HEAD = ['Target', 'Measured', 'Limit', 'Result']

function busyNote (r: BenchResults): string {
  const m = r.machine
  const load = Math.max(m.loadAvgStart, m.loadAvgEnd)
  if (load < m.cpuCount * 0.75) return ''
  return `\n> **Busy machine:** the 1-minute load average reached ${load.toFixed(2)} on ${m.cpuCount} CPUs during this run,\n` +
    '> so other processes competed for the CPU: tail latencies (p99, max) and throughput are pessimistic.\n'
}

export function renderText (r: BenchResults): string {
  const m = r.machine
  const busy = busyNote(r).replace(/[>*]/g, '').replace(/\s+/g, ' ').trim()
  return [
    ...(busy !== '' ? [busy, ''] : []),
    `Parley benchmark${r.quick ? ' (--quick: small N, figures are indicative only)' : ''}`,
    `${m.cpuModel} x${m.cpuCount}, ${fmtMib(m.totalMemBytes)} RAM, ${m.os}, node ${m.node}, load ${m.loadAvgStart.toFixed(2)} -> ${m.loadAvgEnd.toFixed(2)}, rev ${r.revision}`,
    `${r.scenarios.dm.messageBytes}-byte messages, loopback TCP + Noise + Yamux`,
    '',
    textTable(LAT_HEAD, latencyRows(r)),
    '',
    textTable(TP_HEAD, throughputRows(r)),
    '',
    textTable(MEM_HEAD, memoryRows(r)),
    '',
    textTable(TGT_HEAD, r.targets.map((t) => [t.target, t.measured, t.limit, t.verdict])),
    '',
    `total ${round(r.durationMs / 1000, 1)} s`
  ].join('\n')
}

export function renderMarkdown (r: BenchResults): string {
  const m = r.machine
  const c = r.config
  const tp = r.scenarios.dm.throughput
  return `# Benchmarks

<!-- Generated by test/bench/run.ts (npm run bench). Do not edit by hand: the next run rewrites this file. -->

## How to run

\`\`\`sh
npm run bench            # build, then the full run (about a minute or two)
node dist/test/bench/run.js --quick   # after a build: small N smoke run (does not rewrite this file)
\`\`\`

Each run prints the tables below, writes the raw figures to \`bench-results/bench-<timestamp>.json\`
and \`bench-results/latest.json\` (git-ignored), and (full runs only) rewrites this file.
CI does not run the benchmark.

Everything runs in one Node process on loopback (\`/ip4/127.0.0.1/tcp/0\`), over the same stack as
\`core/net/node.ts\`: TCP, Noise, Yamux.

## What is measured

- **Floor**: two bare libp2p nodes (\`createNode\`, fresh Ed25519 keys) and one warm, long-lived
  stream per measurement, no Parley code in the path except the length-prefix decoder.
  - *Echo RTT*: ${c.floor.messageBytes}-byte message, sent and echoed back, one at a time:
    ${c.floor.echoSamples.toLocaleString('en-US')} samples after ${c.floor.echoWarmup.toLocaleString('en-US')} warm-up.
    The one-way estimate is RTT / 2.
  - *Throughput*: ${c.floor.throughputMessages.toLocaleString('en-US')} length-prefixed ${c.floor.messageBytes}-byte frames
    sent as fast as backpressure allows (\`stream.send()\` false -> \`await stream.onDrain()\`), timed until the
    receiver has counted the last one. Once with one frame per \`send\`, once with ${c.floor.coalesce} frames per
    \`send\` (the DM outbox also coalesces frames into one write).
- **Parley DM**: two \`Messenger\`s, each with a real level database in a fresh temp dir (default
  \`syncWrites: false\`: batches survive a process crash, not an OS crash), A adds B by invite.
  - *Latency*: \`a.sendText(b, text)\` with ~${c.dm.messageBytes}-byte texts, one at a time:
    ${c.dm.latencySamples.toLocaleString('en-US')} samples after ${c.dm.latencyWarmup.toLocaleString('en-US')} warm-up.
    Measured from the call to B's \`message\` event for that text (which fires after B stored it). Each
    sample also waits for A's \`delivered\` status before the next starts, so samples do not overlap;
    the time to \`delivered\` and to the \`sendText\` promise resolving are reported alongside.
  - *Throughput*: ${c.dm.throughputMessages.toLocaleString('en-US')} \`sendText\` calls with at most
    ${c.dm.maxOutstanding.toLocaleString('en-US')} outstanding at once, timed from the first call until B has
    emitted every \`message\` event, and until A has emitted every \`delivered\` status.
  - *Memory*: \`process.memoryUsage()\` before and after the throughput run (after a forced GC
    ${r.scenarios.dm.memory.gcAvailable ? 'which was available in this run' : '- not available in this run, so heap figures include garbage'}), plus the peak sampled every 50 ms.
    Both nodes and both databases share this process, so the figures are for the pair.

## Machine

| | |
| :-- | :-- |
| CPU | ${m.cpuModel} (${m.cpuCount} logical CPUs) |
| Memory | ${fmtMib(m.totalMemBytes)} |
| OS | ${m.os} |
| Node | ${m.node} (V8 ${m.v8}) |
| Load average (1 min) | ${m.loadAvgStart.toFixed(2)} at start, ${m.loadAvgEnd.toFixed(2)} at end |
| Run | ${r.timestamp}${r.quick ? ' (--quick)' : ''}, ${round(r.durationMs / 1000, 1)} s, revision \`${r.revision}\` |

## Results
${busyNote(r)}
### Latency

${mdTable(LAT_HEAD, latencyRows(r))}

### Throughput

${mdTable(TP_HEAD, throughputRows(r))}
${tp.complete ? '' : `\n**The DM throughput run did not complete before the ${c.dm.timeoutMs} ms timeout.**\n`}
### Memory

${mdTable(MEM_HEAD, memoryRows(r))}

## Targets

From the issue: "DM latency p50 within 2x of the floor, p99 under 5 ms, at least 10,000 messages/s
sustained one way; report memory". The DM latency is one-way, so the like-for-like comparison is
against the floor's one-way estimate (RTT / 2); the comparison against the full echo RTT is also
shown, but it is twice as lenient.

${mdTable(TGT_HEAD, r.targets.map((t) => [t.target, t.measured, t.limit, `**${t.verdict}**`]), [':--', '--:', '--:', ':-:'])}

${r.targets.filter((t) => t.note !== undefined).map((t) => `- *${t.id}*: ${t.note ?? ''}`).join('\n')}

Figures vary between machines and runs (a loaded machine mostly moves p99 and max); compare runs on
the same machine, and see \`bench-results/\` for the raw JSON.
`
}
