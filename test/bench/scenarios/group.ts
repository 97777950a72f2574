/**
 * The group scenarios (issue 5), every process a separate OS process (group-peer.ts behind
 * PeerHandles), with one relay process (relay-peer.ts: mailbox, prekey and peer directories)
 * that every member has in `relays`, as members of a group need not be contacts and find
 * each other there:
 *   - fan-out: a group of N members spread over P member processes (N / P Messengers each).
 *     Member 0 adds the others as contacts, creates the group with all of them, each accepts
 *     (the product path: invites and sender keys over 1:1 Signal sessions, members dialling
 *     each other). Warm-up: every member sends `warmupRounds` messages and every member must
 *     have them all (so every member holds every sender key and gossip has subscribers), then
 *     `messages` messages, message i sent by member i mod N at startAt + i x gapMs (shared
 *     clock). Each member notes when its `group.message` event fired for each message id; per
 *     message, "all members have it" is the latest of the N - 1 arrivals minus the send time.
 *   - catch-up: a group of two, A and B in their own processes. B stops; A writes `messages`
 *     messages with groups.send (set-up, not timed: that is also when A's outbox seals a 1:1
 *     copy of each record for B and deposits it in B's relay mailbox; we wait until it has).
 *     B's Messenger starts again with the same data directory; timed from Messenger.start
 *     until B's group history holds every message. B recovers them by group-sync with A (if
 *     it connects to A) and by draining its relay mailbox, whichever is first: the product's
 *     behaviour. When B's connection to A came up is reported too.
 *   - memory: a fresh process opens B's stored group (10,000 messages) as GroupManager.open
 *     does (GroupDoc.open from its records and snapshot): the heap used after a GC with the
 *     document open minus before, plus the bytes of its records in level and the database's
 *     size on disk.
 */
import { join } from 'node:path'
import type { PeerHandle } from '../peer.js'
import { rate, summarize, type LatencySummary } from '../stats.js'
import { offsetOf } from '../clock.js'
import { now, sharedNow } from '../util.js'
import { Group as Processes, type Spawn } from './relay.js'
import type { GroupMemberInfo, GroupMemberState, GroupOpenRun, GroupSent } from './group-peer.js'

export interface GroupSize {
  members: number
  /** Member processes: members / processes Messengers each. */
  processes: number
  /** Measured messages and the gap between two sends (the rate is 1000 / gapMs per second). */
  messages: number
  gapMs: number
}

export interface GroupOptions {
  sizes: GroupSize[]
  /** Messages each member sends during the warm-up. */
  warmupRounds: number
  warmupGapMs: number
  /** How long forming the group (every invite arrived and accepted) may take. */
  formTimeoutMs: number
  /** How long to wait for every member to have every warm-up message (the run goes on regardless). */
  warmupTimeoutMs: number
  messageBytes: number
  /** Messages the catch-up member misses. */
  catchUpMessages: number
  timeoutMs: number
}

export interface ConnectionFigures {
  /** Over the members: min / mean / max. */
  connections: Spread
  memberConnections: Spread
  subscribers: Spread
  mesh: Spread
  /** Envelopes left in all members' outboxes (1:1 copies not yet delivered, receipts...). */
  pending: number
}

export interface Spread {
  min: number
  mean: number
  max: number
}

export interface FanoutResult {
  members: number
  processes: number
  messages: number
  gapMs: number
  messageBytes: number
  /** Why the scenario stopped, if it did (then no figure below is measured). */
  error?: string
  /** Set-up, not timed figures: forming the group (create + every accept) and the warm-up until everyone had everything. */
  formMs: number
  warmupMs: number
  warmupMessages: number
  /** Whether every member had every warm-up message in time (else: the fewest one had). */
  warmupComplete: boolean
  warmupFewest: number
  /** Set-up: from the end of the warm-up until every member's outbox was empty (or SETTLE_MAX_MS passed: `settled` false). */
  settleMs: number
  settled: boolean
  /** CPU (user + system) all member processes used during the measured run, its wall time, and per delivery. */
  cpuMs: number
  cpuWallMs: number
  cpuMsPerDelivery: number
  /** Event-loop delay over the measured run, worst member process: p99 and max (ms late). */
  loopDelayP99Ms: number
  loopDelayMaxMs: number
  /**
   * The member processes' shared clocks (checked against the harness's over IPC before the
   * measured run, NTP style: clock.ts): the largest minus the smallest offset, and how well
   * each offset is known (the fastest IPC round trip, worst process).
   */
  clockSpreadMs: number
  clockUncertaintyMs: number
  /** Per message: send called -> the last of the other members' group.message events (shared clock). */
  allMembers: LatencySummary
  /** Every (message, receiving member) pair: send called -> that member's group.message event. */
  perDelivery: LatencySummary
  /** groups.send called -> its promise resolved, on the sender. */
  sendResolved: LatencySummary
  /** Messages every other member had, and deliveries seen, out of messages x (members - 1). */
  complete: number
  deliveries: number
  /** Connected topic subscribers the sender saw at each send (the other members get a 1:1 copy through the outbox). */
  senderSubscribers: Spread
  /** After the warm-up, and after the measured run. */
  before: ConnectionFigures
  after: ConnectionFigures
}

export interface CatchUpResult {
  messages: number
  /** Set-up: A's groups.send x messages, one after another, while B is stopped. */
  writeMs: number
  writePerSec: number
  /** Set-up: from A's first send until A's outbox no longer held anything for B (copies deposited at the relay). */
  outboxDrainedMs: number
  outboxDrained: boolean
  /** Envelopes for B still in A's outbox when B started again (1:1 copies not deposited anywhere). */
  outboxLeft: number
  complete: boolean
  received: number
  /** B's Messenger.start called -> B's group history holds every message. */
  startToAllMs: number
  /** Messenger.start called -> resolved. */
  startMs: number
  /** B's connection to A came up (from Messenger.start), if it did. */
  startToConnectedMs?: number
  /** That connection -> every message. */
  connectedToAllMs?: number
  perSec: number
}

export interface GroupMemory extends GroupOpenRun {
  /** heapUsed after - before (after GCs). */
  heapBytes: number
  perMessageBytes: number
}

export interface GroupResult {
  fanout: FanoutResult[]
  catchUp: CatchUpResult
  memory: GroupMemory
  pids: Record<string, number[]>
}

function spread (values: number[]): Spread {
  if (values.length === 0) return { min: Number.NaN, mean: Number.NaN, max: Number.NaN }
  return { min: Math.min(...values), mean: values.reduce((a, b) => a + b, 0) / values.length, max: Math.max(...values) }
}

function connectionFigures (states: GroupMemberState[]): ConnectionFigures {
  return {
    connections: spread(states.map((s) => s.connections)),
    memberConnections: spread(states.map((s) => s.memberConnections)),
    subscribers: spread(states.map((s) => s.subscribers)),
    mesh: spread(states.map((s) => s.mesh)),
    pending: states.reduce((n, s) => n + s.pending, 0)
  }
}

/** A member: which process, which index there. */
interface Seat {
  peer: PeerHandle
  local: number
  info: GroupMemberInfo
}

async function sleep (ms: number): Promise<void> {
  await new Promise<void>((resolve) => { setTimeout(resolve, ms) })
}

/** Start `n` members over the given processes (round robin by block), each with the relay. */
async function startMembers (procs: PeerHandle[], n: number, relayAddr: string, dir: string): Promise<Seat[]> {
  const per = Math.ceil(n / procs.length)
  const started = await Promise.all(procs.map(async (peer, p) => {
    const count = Math.max(0, Math.min(per, n - p * per))
    const dataDirs = Array.from({ length: count }, (_v, k) => join(dir, `m${p * per + k}`))
    const { members } = await peer.call('group.start', { dataDirs, relays: [relayAddr] }, 30_000 + count * 5_000)
    return members.map((info) => ({ peer, local: info.index, info }))
  }))
  return started.flat()
}

/** Member 0 adds the others as contacts and creates the group; every other member accepts. */
async function formGroup (seats: Seat[], name: string, timeoutMs: number): Promise<string> {
  const [creator, ...rest] = seats as [Seat, ...Seat[]]
  await creator.peer.call('group.addContacts', { member: creator.local, invites: rest.map((s) => s.info.invite) }, timeoutMs)
  const { group } = await creator.peer.call('group.create', { member: creator.local, name, members: rest.map((s) => s.info.peerId) }, timeoutMs)
  const procs = [...new Set(seats.map((s) => s.peer))]
  await Promise.all(procs.map(async (peer) => await peer.call('group.acceptAll', {
    group, timeoutMs, ...(peer === creator.peer ? { except: [creator.local] } : {})
  }, timeoutMs + 10_000)))
  return group
}

/** Messages [first, first + count), message i from member i mod seats.length, gapMs apart; resolves when every send resolved. */
async function sendRound (seats: Seat[], group: string, first: number, count: number, gapMs: number, o: GroupOptions): Promise<GroupSent[]> {
  const startAt = sharedNow() + 300
  const byPeer = new Map<PeerHandle, Array<{ i: number, member: number }>>()
  for (let k = 0; k < count; k++) {
    const i = first + k
    const seat = seats[i % seats.length] as Seat
    const list = byPeer.get(seat.peer) ?? []
    list.push({ i: k, member: seat.local })
    byPeer.set(seat.peer, list)
  }
  const timeoutMs = count * gapMs + o.timeoutMs
  const runs = await Promise.all([...byPeer].map(async ([peer, sends]) =>
    (await peer.call('group.schedule', { group, startAt, gapMs, sends, messageBytes: o.messageBytes, timeoutMs }, timeoutMs + 10_000)).sent))
  return runs.flat()
}

/** The warm-up's gap between two sends: the configured one, or the size's own if that is longer. */
function warmupGap (o: GroupOptions, size: GroupSize): number {
  return Math.max(o.warmupGapMs, size.gapMs)
}

/** Wait until every member's history holds `count` messages; the fewest any member holds at the end. */
async function waitAll (procs: PeerHandle[], group: string, count: number, timeoutMs: number): Promise<{ complete: boolean, fewest: number }> {
  const results = await Promise.all(procs.map(async (peer) => await peer.call('group.waitCount', { group, count, timeoutMs }, timeoutMs + 10_000)))
  return { complete: results.every((r) => r.complete), fewest: Math.min(...results.flatMap((r) => r.counts)) }
}

async function stateOf (procs: PeerHandle[], group: string, seats: Seat[]): Promise<GroupMemberState[]> {
  const ids = seats.map((s) => s.info.peerId)
  return (await Promise.all(procs.map(async (peer) => (await peer.call('group.state', { group, members: ids })).members))).flat()
}

async function fanout (spawn: Spawn, relayAddr: string, size: GroupSize, o: GroupOptions, dataRoot: string, pids: Record<string, number[]>, log: (line: string) => void): Promise<FanoutResult> {
  const procs = new Processes(spawn)
  try {
    for (let p = 0; p < size.processes; p++) await procs.add(`group-${size.members}-P${p}`)
    pids[`fanout-${size.members}`] = procs.peers.map((p) => p.pid)
    const seats = await startMembers(procs.peers, size.members, relayAddr, join(dataRoot, `group-${size.members}`))
    const t0 = now()
    const group = await formGroup(seats, `bench ${size.members}`, o.formTimeoutMs)
    const formMs = now() - t0

    const t1 = now()
    const warmupMessages = o.warmupRounds * size.members
    // Never faster than the measured run: a warm-up burst beyond what the machine sustains
    // (50 members at 20 messages/s is about 1,000 deliveries/s on 2 CPUs) leaves a backlog
    // the measured run would then time.
    await sendRound(seats, group, 0, warmupMessages, warmupGap(o, size), o)
    const warm = await waitAll(procs.peers, group, warmupMessages, o.warmupTimeoutMs)
    const warmupMs = now() - t1
    if (!warm.complete) log(`  warm-up incomplete after ${Math.round(warmupMs)} ms: the fewest any member had was ${warm.fewest}/${warmupMessages}`)
    // Let the set-up settle (sender keys, 1:1 copies of the warm-up for members not yet on the
    // topic, the dials they caused): until no member's outbox holds anything, then 1 s, so the
    // measured run times fan-out rather than what is left of forming the group.
    const settleStart = now()
    const settled = await pollUntil(async () => (await stateOf(procs.peers, group, seats)).every((s) => s.pending === 0), SETTLE_MAX_MS)
    const settleMs = now() - settleStart
    if (!settled) log(`  outboxes still not empty ${Math.round(settleMs)} ms after the warm-up; measuring anyway`)
    await sleep(1000)
    const before = connectionFigures(await stateOf(procs.peers, group, seats))
    await Promise.all(procs.peers.map(async (peer) => await peer.call('group.arrivals', {})))

    // Every figure below subtracts one member process's shared clock from another's.
    const clocks: Array<{ offset: number, halfRtt: number }> = []
    for (const peer of procs.peers) clocks.push(await offsetOf(peer, CLOCK_EXCHANGES))
    await Promise.all(procs.peers.map(async (peer) => await peer.call('usage.start', { peaks: false })))
    const sent = await sendRound(seats, group, 0, size.messages, size.gapMs, o)
    await waitAll(procs.peers, group, warmupMessages + size.messages, o.timeoutMs)
    const usage = await Promise.all(procs.peers.map(async (peer) => await peer.call('usage.stop', {})))
    const cpuMs = usage.reduce((n, u) => n + u.cpuUserMs + u.cpuSystemMs, 0)
    const wallMs = Math.max(...usage.map((u) => u.wallMs))
    const after = connectionFigures(await stateOf(procs.peers, group, seats))
    const collected = await Promise.all(procs.peers.map(async (peer) => ({ peer, arrivals: (await peer.call('group.arrivals', {})).arrivals })))

    const arrivalsOf = new Map<string, number[]>(sent.map((s) => [s.id, []]))
    for (const { arrivals } of collected) {
      for (const perMember of arrivals) {
        for (const [id, t] of Object.entries(perMember)) arrivalsOf.get(id)?.push(t)
      }
    }
    const all: number[] = []
    const each: number[] = []
    let complete = 0
    let deliveries = 0
    for (const s of sent) {
      const times = arrivalsOf.get(s.id) ?? []
      deliveries += times.length
      for (const t of times) each.push(t - s.sentAt)
      if (times.length >= size.members - 1) {
        complete++
        all.push(Math.max(...times) - s.sentAt)
      }
    }
    return {
      members: size.members,
      processes: size.processes,
      messages: size.messages,
      gapMs: size.gapMs,
      messageBytes: o.messageBytes,
      formMs,
      warmupMs,
      warmupMessages,
      warmupComplete: warm.complete,
      warmupFewest: warm.fewest,
      settleMs,
      settled,
      cpuMs,
      cpuWallMs: wallMs,
      cpuMsPerDelivery: deliveries > 0 ? cpuMs / deliveries : Number.NaN,
      loopDelayP99Ms: Math.max(...usage.map((u) => u.loopDelayP99Ms)),
      loopDelayMaxMs: Math.max(...usage.map((u) => u.loopDelayMaxMs)),
      clockSpreadMs: Math.max(...clocks.map((c) => c.offset)) - Math.min(...clocks.map((c) => c.offset)),
      clockUncertaintyMs: 2 * Math.max(...clocks.map((c) => c.halfRtt)),
      allMembers: summarize(all),
      perDelivery: summarize(each),
      sendResolved: summarize(sent.map((s) => s.resolvedAt - s.sentAt)),
      complete,
      deliveries,
      senderSubscribers: spread(sent.map((s) => s.subscribers)),
      before,
      after
    }
  } finally {
    await procs.closeAll()
  }
}

const NO_LATENCY: LatencySummary = summarize([])
const NO_SPREAD: Spread = { min: Number.NaN, mean: Number.NaN, max: Number.NaN }
const NO_CONNECTIONS: ConnectionFigures = { connections: NO_SPREAD, memberConnections: NO_SPREAD, subscribers: NO_SPREAD, mesh: NO_SPREAD, pending: 0 }

function failedFanout (size: GroupSize, o: GroupOptions, error: string): FanoutResult {
  return {
    ...size,
    messageBytes: o.messageBytes,
    error,
    formMs: Number.NaN,
    warmupMs: Number.NaN,
    warmupMessages: 0,
    warmupComplete: false,
    warmupFewest: 0,
    settleMs: Number.NaN,
    settled: false,
    cpuMs: Number.NaN,
    cpuWallMs: Number.NaN,
    cpuMsPerDelivery: Number.NaN,
    loopDelayP99Ms: Number.NaN,
    loopDelayMaxMs: Number.NaN,
    clockSpreadMs: Number.NaN,
    clockUncertaintyMs: Number.NaN,
    allMembers: NO_LATENCY,
    perDelivery: NO_LATENCY,
    sendResolved: NO_LATENCY,
    complete: 0,
    deliveries: 0,
    senderSubscribers: NO_SPREAD,
    before: NO_CONNECTIONS,
    after: NO_CONNECTIONS
  }
}

/** How long a fan-out run waits after its warm-up for every member's outbox to be empty. */
const SETTLE_MAX_MS = 60_000
/** IPC clock exchanges per member process (the fastest one counts). */
const CLOCK_EXCHANGES = 100

/** How long the catch-up waits for A's outbox to hand B's copies to the relay before B starts again. */
const OUTBOX_WAIT_MS = 10_000

async function pollUntil (check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = now() + timeoutMs
  for (;;) {
    if (await check()) return true
    if (now() > deadline) return false
    await sleep(100)
  }
}

async function catchUp (spawn: Spawn, relayAddr: string, o: GroupOptions, dataRoot: string, pids: Record<string, number[]>): Promise<{ result: CatchUpResult, bDir: string, group: string }> {
  const procs = new Processes(spawn)
  try {
    const pa = await procs.add('group-catchup-A')
    const pb = await procs.add('group-catchup-B')
    pids.catchUp = [pa.pid, pb.pid]
    const dir = join(dataRoot, 'group-catchup')
    const seats = [...await startMembers([pa], 1, relayAddr, join(dir, 'A')), ...await startMembers([pb], 1, relayAddr, join(dir, 'B'))]
    const [a, b] = seats as [Seat, Seat]
    const group = await formGroup(seats, 'bench catch-up', o.timeoutMs)
    await sendRound(seats, group, 0, 2, o.warmupGapMs, o)
    if (!(await waitAll(procs.peers, group, 2, o.timeoutMs)).complete) throw new Error('catch-up: the warm-up did not reach both members')
    await pb.call('group.stopMember', { member: b.local })

    const n = o.catchUpMessages
    const callTimeout = n * 50 + o.timeoutMs
    const write = await pa.call('group.blast', { member: a.local, group, count: n, messageBytes: o.messageBytes }, callTimeout)
    // A's outbox turns the 1:1 copies for B into relay-mailbox deposits if it can; give it a while.
    const outboxDrained = await pollUntil(async () => (await pa.call('group.pending', { member: a.local, peer: b.info.peerId })).pending === 0, OUTBOX_WAIT_MS)
    const outboxDrainedMs = sharedNow() - write.startedAt
    const { pending: outboxLeft } = await pa.call('group.pending', { member: a.local, peer: b.info.peerId })

    const back = await pb.call('group.restart', { member: b.local, relays: [relayAddr] })
    const wait = await pb.call('group.waitCount', { group, count: n + 2, timeoutMs: callTimeout, members: [b.local] }, callTimeout + 10_000)
    const { t: connectedAt } = await pb.call('group.connectedAt', { member: b.local, peer: a.info.peerId })
    const doneAt = wait.doneAt[0] ?? Number.NaN
    const startToAllMs = doneAt - back.startCalledAt
    const result: CatchUpResult = {
      messages: n,
      writeMs: write.doneAt - write.startedAt,
      writePerSec: rate(n, write.doneAt - write.startedAt),
      outboxDrainedMs,
      outboxDrained,
      outboxLeft,
      complete: wait.complete,
      received: Math.max(0, (wait.counts[0] ?? 0) - 2),
      startToAllMs,
      startMs: back.startedAt - back.startCalledAt,
      ...(connectedAt !== undefined ? { startToConnectedMs: connectedAt - back.startCalledAt, connectedToAllMs: doneAt - connectedAt } : {}),
      perSec: rate(n, startToAllMs)
    }
    await pb.call('group.stopMember', { member: b.local })
    return { result, bDir: join(dir, 'B', 'm0'), group }
  } finally {
    await procs.closeAll()
  }
}

async function memory (spawn: Spawn, bDir: string, group: string, messages: number, pids: Record<string, number[]>): Promise<GroupMemory> {
  const procs = new Processes(spawn)
  try {
    const peer = await procs.add('group-memory')
    pids.memory = [peer.pid]
    const run = await peer.call('group.open', { dataDir: bDir, group }, 120_000)
    const heapBytes = run.after.heapUsedBytes - run.before.heapUsedBytes
    return { ...run, heapBytes, perMessageBytes: heapBytes / Math.max(1, messages) }
  } finally {
    await procs.closeAll()
  }
}

/** The relay process every group scenario's members use (mailbox, prekey and peer directories): its pid and TCP address. */
async function startRelay (relays: Processes, dataRoot: string): Promise<{ pid: number, addr: string }> {
  const relay = await relays.add('group-relay')
  const started = await relay.call('relay.start', { dataDir: join(dataRoot, 'group-relay'), directory: true })
  const addr = started.addrs[0]
  if (addr === undefined) throw new Error('the relay reported no TCP address')
  return { pid: relay.pid, addr }
}

/** One fan-out size on its own, with its own relay process (test/bench/fanout.ts: iterating on fan-out without the rest of the bench). */
export async function runFanoutOnly (spawn: Spawn, size: GroupSize, o: GroupOptions, dataRoot: string, log: (line: string) => void): Promise<FanoutResult> {
  const relays = new Processes(spawn)
  try {
    const relay = await startRelay(relays, dataRoot)
    return await fanout(spawn, relay.addr, size, o, dataRoot, {}, log)
  } finally {
    await relays.closeAll()
  }
}

export async function runGroups (spawn: Spawn, o: GroupOptions, dataRoot: string, log: (line: string) => void): Promise<GroupResult> {
  const pids: Record<string, number[]> = {}
  const relays = new Processes(spawn)
  try {
    const relay = await startRelay(relays, dataRoot)
    const relayAddr = relay.addr
    pids.relay = [relay.pid]
    const fan: FanoutResult[] = []
    for (const size of o.sizes) {
      log(`group fan-out: ${size.members} members in ${size.processes} processes, ${size.messages} messages ${size.gapMs} ms apart...`)
      try {
        fan.push(await fanout(spawn, relayAddr, size, o, dataRoot, pids, log))
      } catch (err) {
        // One size failing (a group that never forms on a loaded machine) must not lose the rest of the run.
        log(`  group of ${size.members} failed: ${(err as Error).message}`)
        fan.push(failedFanout(size, o, (err as Error).message))
      }
    }
    log(`group catch-up: a member misses ${o.catchUpMessages} messages, then starts again...`)
    const c = await catchUp(spawn, relayAddr, o, dataRoot, pids)
    log('group memory: the caught-up group opened in a fresh process...')
    const mem = await memory(spawn, c.bDir, c.group, c.result.received, pids)
    return { fanout: fan, catchUp: c.result, memory: mem, pids }
  } finally {
    await relays.closeAll()
  }
}
