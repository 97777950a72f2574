/**
 * A benchmark peer: one floor node and/or one Messenger, driven by method calls. The harness
 * (run.ts) talks to peers through PeerHandle only, so the same scenario code runs
 *   - across processes: ProcessPeer (process-peer.ts) forks peer-process.ts, which hosts a
 *     PeerHost and answers calls over the IPC channel (the primary figures), or
 *   - in one process: LocalPeer calls a PeerHost in the harness's own process (the secondary,
 *     shared-thread figures).
 * No call is made while something is being timed: the scenarios start a timed run with one
 * call and collect the timestamps (shared clock) with the next.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks'
import { collectGarbage, PeakSampler, snapshot, type MemorySnapshot } from './memory.js'
import { runCryptoBench, type CryptoParams, type CryptoRun } from './scenarios/crypto-peer.js'
import {
  DmPeer, type DepositSealedParams, type DmBlastParams, type DmBlastRun, type DmLatencyParams, type DmLatencyRun, type DmReceived, type DmStarted,
  type DmStartParams, type SealParams, type SealRun
} from './scenarios/dm-peer.js'
import {
  GroupPeer, type GroupBlastParams, type GroupBlastRun, type GroupMemberInfo, type GroupMemberStartParams, type GroupMemberState, type GroupOpenParams,
  type GroupOpenRun, type GroupScheduleParams, type GroupSent, type GroupWaitParams, type GroupWaitResult
} from './scenarios/group-peer.js'
import { FloorPeer, type EchoParams, type EchoRun, type SinkSendParams, type SinkSendRun, type SinkWaitResult } from './scenarios/floor-peer.js'
import {
  RelayPeer, type DepositRun, type DrainParams, type DrainRun, type MailboxClientParams, type MailboxClientStarted, type RelayStarted,
  type SwarmParams, type SwarmRun, type FloodParams, type FloodRun
} from './scenarios/relay-peer.js'
import { now, sharedNow } from './util.js'

type Empty = Record<string, never>

const LOOP_RESOLUTION_MS = 20

/** What a process used between usage.start and usage.stop. */
export interface Usage {
  peakRssBytes: number
  peakHeapUsedBytes: number
  /** process.cpuUsage() over the interval (all of the process's threads, so it can exceed wallMs). */
  cpuUserMs: number
  cpuSystemMs: number
  wallMs: number
  /** How late the event loop ran its timers over the interval (perf_hooks monitorEventLoopDelay, LOOP_RESOLUTION_MS): p99 and max. */
  loopDelayP99Ms: number
  loopDelayMaxMs: number
}

/** Every call a peer answers: what it takes and what it returns (structured-clone safe). */
export interface PeerMethods {
  'clock.now': { params: Empty, result: { t: number, pid: number } }
  'mem.snapshot': { params: { gc: boolean }, result: { memory: MemorySnapshot, gcAvailable: boolean } }
  /**
   * Start counting CPU time and (unless `peaks` is false) sampling peak memory every 50 ms:
   * process.memoryUsage() reads /proc each time, 3% of the CPU of a loaded member process in
   * the group fan-out, which does not report peaks (Usage's peaks are 0 then).
   */
  'usage.start': { params: { peaks?: boolean }, result: Empty }
  'usage.stop': { params: Empty, result: Usage }
  'floor.start': { params: { messageBytes: number }, result: { addrs: string[] } }
  'floor.dial': { params: { addrs: string[] }, result: Empty }
  'floor.echo': { params: EchoParams, result: EchoRun }
  'floor.echoArrivals': { params: Empty, result: { arrivals: number[] } }
  'floor.sinkOpen': { params: { addrs: string[] }, result: Empty }
  'floor.sinkSend': { params: SinkSendParams, result: SinkSendRun }
  'floor.sinkClose': { params: Empty, result: Empty }
  'floor.sinkExpect': { params: { count: number }, result: Empty }
  'floor.sinkWait': { params: { timeoutMs: number }, result: SinkWaitResult }
  'floor.stop': { params: Empty, result: Empty }
  'dm.start': { params: DmStartParams, result: DmStarted }
  'dm.addContact': { params: { invite: string, name: string }, result: Empty }
  'dm.latency': { params: DmLatencyParams, result: DmLatencyRun }
  'dm.arrivals': { params: Empty, result: { arrivals: Record<string, number> } }
  'dm.expect': { params: { count: number }, result: Empty }
  'dm.waitReceived': { params: { timeoutMs: number, stallMs?: number }, result: DmReceived }
  'dm.blast': { params: DmBlastParams, result: DmBlastRun }
  'dm.prekeysAtRelay': { params: Empty, result: { relays: Record<string, number> } }
  'dm.rejections': { params: Empty, result: { rejections: Record<string, number> } }
  'dm.connectedAt': { params: { peer: string }, result: { t: number | undefined } }
  'dm.seal': { params: SealParams, result: SealRun }
  'dm.deposit': { params: DepositSealedParams, result: DepositRun }
  'dm.stop': { params: Empty, result: Empty }
  /** Two SignalCiphers in this process: encrypt + decrypt cost per message (crypto-peer.ts). */
  'crypto.run': { params: CryptoParams, result: CryptoRun }
  'relay.start': { params: { dataDir: string, directory?: boolean, operatorLimits?: boolean }, result: RelayStarted }
  'relay.connections': { params: Empty, result: { connections: number } }
  'relay.stop': { params: Empty, result: Empty }
  'mailbox.start': { params: MailboxClientParams, result: MailboxClientStarted }
  'mailbox.drain': { params: DrainParams, result: DrainRun }
  'mailbox.stop': { params: Empty, result: Empty }
  'swarm.start': { params: SwarmParams, result: SwarmRun }
  'swarm.stop': { params: Empty, result: Empty }
  'flood.start': { params: FloodParams, result: Empty }
  'flood.stop': { params: Empty, result: FloodRun }
  /** Group members: several Messengers in this process, addressed by index (group-peer.ts). */
  'group.start': { params: GroupMemberStartParams, result: { members: GroupMemberInfo[] } }
  'group.restart': { params: { member: number, relays: string[] }, result: GroupMemberInfo }
  'group.addContacts': { params: { member: number, invites: string[] }, result: Empty }
  'group.create': { params: { member: number, name: string, members: string[] }, result: { group: string } }
  'group.acceptAll': { params: { group: string, timeoutMs: number, except?: number[] }, result: Empty }
  'group.schedule': { params: GroupScheduleParams, result: { sent: GroupSent[] } }
  'group.arrivals': { params: Empty, result: { arrivals: Array<Record<string, number>> } }
  'group.waitCount': { params: GroupWaitParams, result: GroupWaitResult }
  'group.state': { params: { group: string, members: string[] }, result: { members: GroupMemberState[] } }
  'group.connectedAt': { params: { member: number, peer: string }, result: { t: number | undefined } }
  'group.dial': { params: { member: number, addr: string }, result: Empty }
  'group.pending': { params: { member: number, peer?: string }, result: { pending: number } }
  'group.blast': { params: GroupBlastParams, result: GroupBlastRun }
  'group.stopMember': { params: { member: number }, result: Empty }
  /** In a fresh process: a stopped member's group, opened from its store (heap and disk figures). */
  'group.open': { params: GroupOpenParams, result: GroupOpenRun }
  'group.stop': { params: Empty, result: Empty }
  /** Stop everything this peer runs (idempotent). */
  'stop': { params: Empty, result: Empty }
}

export type MethodName = keyof PeerMethods
export type Params<M extends MethodName> = PeerMethods[M]['params']
export type Result<M extends MethodName> = PeerMethods[M]['result']
export type Handlers = { [M in MethodName]: (params: Params<M>) => Promise<Result<M>> }

/** How the harness reaches a peer, whichever process it lives in. */
export interface PeerHandle {
  /** 'A' or 'B' (plus the mode), for messages. */
  readonly name: string
  /** The OS process the peer runs in. */
  readonly pid: number
  call: <M extends MethodName>(method: M, params: Params<M>, timeoutMs?: number) => Promise<Result<M>>
  close: () => Promise<void>
}

export class PeerHost {
  private readonly floor = new FloorPeer()
  private readonly dm = new DmPeer()
  private readonly relay = new RelayPeer()
  private readonly group = new GroupPeer()
  private usage: { peak: PeakSampler, cpu: NodeJS.CpuUsage, wallStart: number, loop: IntervalHistogram } | undefined

  readonly handlers: Handlers = {
    'clock.now': async () => ({ t: sharedNow(), pid: process.pid }),
    'mem.snapshot': async ({ gc }) => {
      const gcAvailable = gc ? collectGarbage() : false
      return { memory: snapshot(), gcAvailable }
    },
    'usage.start': async ({ peaks }) => {
      this.usage?.peak.stop()
      this.usage?.loop.disable()
      const peak = new PeakSampler()
      if (peaks !== false) peak.start()
      const loop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS })
      loop.enable()
      this.usage = { peak, cpu: process.cpuUsage(), wallStart: now(), loop }
      return {}
    },
    'usage.stop': async () => {
      const u = this.usage
      if (u === undefined) throw new Error('usage.start was not called')
      const cpu = process.cpuUsage(u.cpu)
      const wallMs = now() - u.wallStart
      u.peak.stop()
      u.loop.disable()
      this.usage = undefined
      return {
        peakRssBytes: u.peak.peakRssBytes,
        peakHeapUsedBytes: u.peak.peakHeapUsedBytes,
        cpuUserMs: cpu.user / 1000,
        cpuSystemMs: cpu.system / 1000,
        wallMs,
        // The histogram holds the intervals between its 20 ms timer's runs: the delay is what is over 20 ms.
        loopDelayP99Ms: Math.max(0, u.loop.percentile(99) / 1e6 - LOOP_RESOLUTION_MS),
        loopDelayMaxMs: Math.max(0, u.loop.max / 1e6 - LOOP_RESOLUTION_MS)
      }
    },
    'floor.start': async ({ messageBytes }) => ({ addrs: await this.floor.start(messageBytes) }),
    'floor.dial': async ({ addrs }) => { await this.floor.dial(addrs); return {} },
    'floor.echo': async (p) => await this.floor.runEcho(p),
    'floor.echoArrivals': async () => ({ arrivals: this.floor.takeEchoArrivals() }),
    'floor.sinkOpen': async ({ addrs }) => { await this.floor.sinkOpen(addrs); return {} },
    'floor.sinkSend': async (p) => await this.floor.sinkSend(p),
    'floor.sinkClose': async () => { await this.floor.sinkClose(); return {} },
    'floor.sinkExpect': async ({ count }) => { this.floor.sinkExpect(count); return {} },
    'floor.sinkWait': async ({ timeoutMs }) => await this.floor.sinkWait(timeoutMs),
    'floor.stop': async () => { await this.floor.stop(); return {} },
    'dm.start': async (p) => await this.dm.start(p),
    'dm.addContact': async ({ invite, name }) => { await this.dm.addContact(invite, name); return {} },
    'dm.latency': async (p) => await this.dm.latency(p),
    'dm.arrivals': async () => ({ arrivals: this.dm.takeArrivals() }),
    'dm.expect': async ({ count }) => { this.dm.expect(count); return {} },
    'dm.waitReceived': async ({ timeoutMs, stallMs }) => await this.dm.waitReceived(timeoutMs, stallMs),
    'dm.blast': async (p) => await this.dm.blast(p),
    'dm.prekeysAtRelay': async () => ({ relays: this.dm.prekeysAtRelay() }),
    'dm.rejections': async () => ({ rejections: this.dm.rejections() }),
    'dm.connectedAt': async ({ peer }) => ({ t: this.dm.connectedAt(peer) }),
    'dm.seal': async (p) => await this.dm.seal(p),
    'dm.deposit': async (p) => await this.dm.deposit(p),
    'dm.stop': async () => { await this.dm.stop(); return {} },
    'crypto.run': async (p) => await runCryptoBench(p),
    'relay.start': async ({ dataDir, directory, operatorLimits }) => await this.relay.startRelay(dataDir, directory, operatorLimits),
    'relay.connections': async () => ({ connections: this.relay.relayConnections() }),
    'relay.stop': async () => { await this.relay.stopRelay(); return {} },
    'mailbox.start': async (p) => await this.relay.startClient(p),
    'mailbox.drain': async (p) => await this.relay.drain(p),
    'mailbox.stop': async () => { await this.relay.stopClient(); return {} },
    'swarm.start': async (p) => await this.relay.startSwarm(p),
    'swarm.stop': async () => { await this.relay.stopSwarm(); return {} },
    'flood.start': async (p) => { this.relay.startFlood(p); return {} },
    'flood.stop': async () => await this.relay.stopFlood(),
    'group.start': async (p) => ({ members: await this.group.start(p) }),
    'group.restart': async ({ member, relays }) => await this.group.restart(member, relays),
    'group.addContacts': async ({ member, invites }) => { await this.group.addContacts(member, invites); return {} },
    'group.create': async ({ member, name, members }) => ({ group: await this.group.create(member, name, members) }),
    'group.acceptAll': async ({ group, timeoutMs, except }) => { await this.group.acceptAll(group, timeoutMs, except); return {} },
    'group.schedule': async (p) => ({ sent: await this.group.schedule(p) }),
    'group.arrivals': async () => ({ arrivals: this.group.takeArrivals() }),
    'group.waitCount': async (p) => await this.group.waitCount(p),
    'group.state': async ({ group, members }) => ({ members: this.group.state(group, members) }),
    'group.connectedAt': async ({ member, peer }) => ({ t: this.group.connectedAt(member, peer) }),
    'group.dial': async ({ member, addr }) => { await this.group.dial(member, addr); return {} },
    'group.pending': async ({ member, peer }) => ({ pending: this.group.pending(member, peer) }),
    'group.blast': async (p) => await this.group.blast(p),
    'group.stopMember': async ({ member }) => { await this.group.stopMember(member); return {} },
    'group.open': async (p) => await this.group.openGroup(p),
    'group.stop': async () => { await this.group.stop(); return {} },
    'stop': async () => { await this.stop(); return {} }
  }

  isMethod (name: unknown): name is MethodName {
    return typeof name === 'string' && Object.hasOwn(this.handlers, name)
  }

  async stop (): Promise<void> {
    this.usage?.peak.stop()
    this.usage = undefined
    const results = await Promise.allSettled([this.dm.stop(), this.floor.stop(), this.relay.stop(), this.group.stop()])
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed !== undefined) throw failed.reason
  }
}

/** A peer in the harness's own process (the secondary, shared-thread figures). */
export class LocalPeer implements PeerHandle {
  readonly pid = process.pid
  private readonly host = new PeerHost()

  constructor (readonly name: string) {}

  async call<M extends MethodName> (method: M, params: Params<M>): Promise<Result<M>> {
    const handler: Handlers[M] = this.host.handlers[method]
    return await handler(params)
  }

  async close (): Promise<void> {
    await this.host.stop()
  }
}

/** Harness -> peer process, over the IPC channel. */
export interface CallMessage {
  type: 'call'
  id: number
  method: MethodName
  params: unknown
}

export interface WireError {
  name: string
  message: string
  stack?: string
}

/** Peer process -> harness. */
export type PeerMessage =
  | { type: 'ready', pid: number }
  | { type: 'result', id: number, ok: true, result: unknown }
  | { type: 'result', id: number, ok: false, error: WireError }
