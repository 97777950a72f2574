/**
 * The group section of the stdout table and docs/benchmarks.md (report.ts calls these),
 * generated from the results like everything else there.
 */
import { mib } from './memory.js'
import type { CatchUpResult, ConnectionFigures, FanoutResult, GroupOptions, GroupResult, Spread } from './scenarios/group.js'
import { round, type LatencySummary } from './stats.js'

type Table = (head: string[], rows: string[][]) => string

const fmtMs = (n: number | undefined): string => n !== undefined && Number.isFinite(n) ? round(n, 3).toFixed(3) : 'n/a'
const fmtSpread = (s: Spread): string => Number.isFinite(s.mean) ? `${s.min} / ${round(s.mean, 1)} / ${s.max}` : 'n/a'

const FANOUT_HEAD = ['Group fan-out (ms)', 'p50', 'p90', 'p99', 'max', 'samples']
const CONN_HEAD = ['Group connections, per member (min / mean / max)', 'connections', 'to members', 'topic subscribers', 'gossip mesh', 'outbox entries (all)']
const CATCH_HEAD = ['Group catch-up', 'ms', 'messages', 'per second']
const MEM_HEAD = ['Group memory', 'value']

function row (label: string, s: LatencySummary): string[] {
  return [label, fmtMs(s.p50), fmtMs(s.p90), fmtMs(s.p99), fmtMs(s.max), String(s.samples)]
}

function rate (f: FanoutResult): string {
  return `${round(1000 / f.gapMs, 1)} msg/s`
}

function fanoutRows (g: GroupResult): string[][] {
  return g.fanout.flatMap((f) => {
    const who = `${f.members} members (${f.processes} processes), ${rate(f)}`
    if (f.error !== undefined) return [[`${who}: FAILED: ${f.error}`, '', '', '', '', '0']]
    const incomplete = f.complete < f.messages ? ` [${f.complete}/${f.messages} reached all]` : ''
    return [
      row(`${who}: send -> ALL members have it${incomplete}`, f.allMembers),
      row(`${who}: send -> one member has it (per delivery, ${f.deliveries}/${f.messages * (f.members - 1)})`, f.perDelivery),
      row(`${who}: groups.send -> resolved (sender)`, f.sendResolved)
    ]
  })
}

function connRows (g: GroupResult): string[][] {
  const cells = (c: ConnectionFigures): string[] => [fmtSpread(c.connections), fmtSpread(c.memberConnections), fmtSpread(c.subscribers), fmtSpread(c.mesh), String(c.pending)]
  return g.fanout.flatMap((f) => [
    [`${f.members} members, after the warm-up`, ...cells(f.before)],
    [`${f.members} members, after the measured run`, ...cells(f.after)]
  ])
}

function cpuLine (f: FanoutResult): string {
  if (f.error !== undefined) return `${f.members} members: the scenario failed (${f.error}), nothing was measured`
  return `${f.members} members: the member processes used ${Math.round(f.cpuMs)} ms of CPU in ${Math.round(f.cpuWallMs)} ms ` +
    `(${round(f.cpuMs / f.cpuWallMs, 2)} cores), ${fmtMs(f.cpuMsPerDelivery)} ms per delivery; event loops ran late by up to ` +
    `${fmtMs(f.loopDelayP99Ms)} ms at p99 (${fmtMs(f.loopDelayMaxMs)} ms at most, the worst member process); senders saw ${fmtSpread(f.senderSubscribers)} ` +
    `connected topic subscribers (min / mean / max; each other member gets a 1:1 copy). Set-up: group formed in ${Math.round(f.formMs)} ms, ` +
    `warm-up (${f.warmupMessages} messages) ${f.warmupComplete ? 'complete' : `INCOMPLETE (the fewest any member had: ${f.warmupFewest})`} in ${Math.round(f.warmupMs)} ms, ` +
    `outboxes ${f.settled ? 'empty' : 'STILL NOT empty'} ${Math.round(f.settleMs)} ms after it. The member processes' shared clocks ` +
    `agreed to within ${fmtMs(f.clockSpreadMs)} ms (each offset known to ±${fmtMs(f.clockUncertaintyMs)} ms; checked over IPC before the run)`
}

function catchRows (c: CatchUpResult): string[][] {
  const n = c.complete ? String(c.received) : `${c.received}/${c.messages} (incomplete)`
  return [
    ['B: Messenger.start called -> history holds every message', fmtMs(c.startToAllMs), n, String(Math.round(c.perSec))],
    ['B: Messenger.start called -> resolved', fmtMs(c.startMs), '', ''],
    ['B: Messenger.start called -> connected to A', fmtMs(c.startToConnectedMs), '', ''],
    ['B: connected to A -> history holds every message', fmtMs(c.connectedToAllMs), n, ''],
    ['Set-up: A writes them (groups.send, one after another)', fmtMs(c.writeMs), String(c.messages), String(Math.round(c.writePerSec))],
    [`Set-up: A's outbox entries for B left after ${Math.round(c.outboxDrainedMs / 1000)} s (1:1 copies not deposited)`, '', String(c.outboxLeft), '']
  ]
}

function memRows (g: GroupResult): string[][] {
  const m = g.memory
  return [
    [`Heap of one open group of ${m.messages.toLocaleString('en-US')} messages (after GC, fresh process)`, `${mib(m.heapBytes)} MiB`],
    ['Per message', `${Math.round(m.perMessageBytes)} B`],
    ['RSS with it open / before (after GC)', `${mib(m.after.rssBytes)} / ${mib(m.before.rssBytes)} MiB`],
    ['Time to open it (read records + GroupDoc.open)', `${fmtMs(m.openMs)} ms`],
    [`Its records in level (${m.records.toLocaleString('en-US')} values, uncompressed)`, `${mib(m.recordBytes)} MiB`],
    ['Its snapshot in level', `${mib(m.snapshotBytes)} MiB`],
    ['The member\'s whole level directory on disk', `${mib(m.dbDiskBytes)} MiB`]
  ]
}

export function textGroup (g: GroupResult, table: Table): string[] {
  return [
    '== GROUPS: a relay process and member processes (several Messengers each) ==',
    '',
    table(FANOUT_HEAD, fanoutRows(g)),
    ...g.fanout.map(cpuLine),
    '',
    table(CONN_HEAD, connRows(g)),
    '',
    ...textCatchUp(g, table)
  ]
}

/** The catch-up and memory tables (all that `run.js --group-catch-up` measures). */
export function textCatchUp (g: GroupResult, table: Table): string[] {
  return [table(CATCH_HEAD, catchRows(g.catchUp)), '', table(MEM_HEAD, memRows(g)), '']
}

export function mdGroup (g: GroupResult, o: GroupOptions, table: Table): string {
  const sizes = g.fanout.map((f) => `${f.members} members in ${f.processes} processes (${f.messages} messages, one every ${f.gapMs} ms = ${rate(f)})`).join('; ')
  const c = g.catchUp
  return `### Groups (every member a Messenger; several per process)

- *Fan-out*: ${sizes}. Every member is a real \`Messenger\` (own level database, own libp2p node on loopback TCP) with a
  relay process (mailbox, prekey and peer directories) in \`relays\`. Member 0 adds the others as contacts (their invites),
  creates the group with all of them and each accepts: invites, sender keys and the members' dials to each other run as in
  the product. Warm-up: every member sends ${o.warmupRounds} message(s), ${o.warmupGapMs} ms apart (or the size's own gap if longer: never faster than
  the measured run), until every member has them
  all, then until every member's outbox is empty (at most 60 s) and 1 s more. Measured: message *i* is sent by member *i* mod N at a fixed time on the shared clock
  (${o.messageBytes}-byte texts); each member notes when its \`group.message\` event fired. "ALL members" is, per message, the
  last of the N - 1 arrivals minus the moment \`groups.send\` was called; "per delivery" is every arrival. A message reaches
  a member by gossip (sender key) or, for members the sender's gossipsub does not see on the topic, by the 1:1 copy
  the product sends through the outbox; whichever is first. The rate is chosen so a run measures latency, not a backlog
  on this 2-CPU machine (every delivery is a decrypt, a signature check, a yjs apply and a level write in the member's
  process): see the CPU figures.
- *Catch-up*: a group of two, A and B, each in its own process, same relay. After a warm-up message from each, B's
  \`Messenger\` stops; A writes ${c.messages.toLocaleString('en-US')} messages with \`groups.send\` (set-up, not timed). A's outbox
  also queues a 1:1 copy of each record for B, to be deposited in B's relay mailbox (we give it ${Math.round(c.outboxDrainedMs / 1000)} s).
  B's \`Messenger\` then starts again on the same data directory; timed from \`Messenger.start\` until B's group history holds
  every message, by whatever the product does (one group-sync between A and B once connected, started by the peer with
  the smaller id; the mailbox drain; A's outbox sending the queued copies directly once B is back). When B's connection to A came up is shown as well.
- *Memory per group*: after the catch-up B stops; a fresh process opens B's level store, forces a GC, then reads the
  group's stored records and snapshot and builds its \`GroupDoc\` exactly as \`GroupManager.open\` does, drops the
  temporaries and forces a GC again: the heapUsed difference is what one open group of that many messages holds.

#### Group fan-out

${table(FANOUT_HEAD, fanoutRows(g))}

${g.fanout.map((f) => `- ${cpuLine(f)}.`).join('\n')}

${table(CONN_HEAD, connRows(g))}

#### Group catch-up

${table(CATCH_HEAD, catchRows(c))}

#### Group memory

${table(MEM_HEAD, memRows(g))}
`
}
