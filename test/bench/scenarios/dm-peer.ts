/**
 * One side of the DM scenario: a real Messenger with its own level database, playing sender
 * (A) or receiver (B) as the orchestrator (dm.ts) asks. Runs in a peer process
 * (peer-process.ts) or, for the in-process figures, twice in the harness's own process. Texts
 * are payload() strings whose tag says what they are for:
 *   lat-<i>  latency, one way: the receiver notes when its 'message' event fired
 *   rt-<i>   latency, round trip: the receiver notes the time and at once replies re-<i>
 *   re-<i>   the reply: the sender notes when its 'message' event fired
 *   tp-<i>   throughput: the receiver only counts them
 *   mb-<i>   sealed ahead of time (seal) and deposited in the receiver's relay mailbox
 *            (deposit): the receiver counts them like tp- texts as it drains them
 * Every timestamp is on the shared clock (sharedNow).
 */
import { peerIdFromString } from '@libp2p/peer-id'
import type { MessengerEvent } from '../../../core/api/contract.js'
import { newMessageId, type MessageId, type PeerIdString } from '../../../core/ids.js'
import { Messenger } from '../../../core/messenger.js'
import { readSealed, type DmEnvelope } from '../../../core/protocols/dm/codec.js'
import { MailboxClient } from '../../../core/protocols/mailbox/client.js'
import { Arrivals, Countdown, payload, sharedNow, tagOf, withTimeout } from '../util.js'
import { depositAll, type DepositRun } from './relay-peer.js'

export interface DmStartParams {
  dataDir: string
  /** Relays to stay connected to (their mailboxes and prekey directories). */
  relays?: string[]
  /** With relays: listen only on '/p2p-circuit' (the default), or on loopback TCP as well. */
  circuitOnly?: boolean
  /** MessengerOptions.benchmarkWithoutE2ee: envelopes go on the wire unencrypted (both ends must set it). */
  plain?: boolean
  /** Count the next `expect` tp-/mb- texts from before the Messenger starts (see waitReceived). */
  expect?: number
}

export interface DmStarted {
  peerId: string
  invite: string
  /** Shared clock: just before Messenger.start, and when it resolved. */
  startCalledAt: number
  startedAt: number
}

export interface SealParams {
  to: string
  count: number
  /** Envelopes per sealEnvelopes call. */
  batch: number
  messageBytes: number
}

export interface SealRun {
  sealed: number
  elapsedMs: number
  /** Sealed frames by kind ('prekey' / 'whisper'). */
  kinds: Record<string, number>
  /** Mean Sealed frame size. */
  meanBytes: number
}

export interface DepositSealedParams {
  relayId: string
  recipient: string
  /** Which of the sealed frames: [from, from + count). */
  from: number
  count: number
  batchSize: number
  parallel: number
}

export type LatencyMode = 'one-way' | 'round-trip'

export interface DmLatencyParams {
  to: string
  mode: LatencyMode
  messageBytes: number
  warmup: number
  samples: number
  timeoutMs: number
}

/** Per message, warm-up included, shared clock. */
export interface DmLatencyRun {
  tags: string[]
  /** sendText called. */
  sentAt: number[]
  /** Its promise resolved (local durable write + enqueue). */
  resolvedAt: number[]
  /** The sender's 'delivered' status event (the receiver's ack, persisted). */
  deliveredAt: number[]
  /** round-trip only: the sender's 'message' event for the receiver's reply. */
  replyAt: number[]
}

export interface DmBlastParams {
  to: string
  messages: number
  maxOutstanding: number
  messageBytes: number
  timeoutMs: number
}

export interface DmBlastRun {
  /** First sendText call. */
  startedAt: number
  /** Last sendText promise resolved. */
  enqueuedAt: number
  /** Every 'delivered' status seen (or the deadline). */
  deliveredAt: number
  delivered: number
  complete: boolean
}

export interface DmReceived {
  received: number
  complete: boolean
  /** Gave up early: no new message for `stallMs` (see waitReceived). */
  stalled: boolean
  firstAt: number
  doneAt: number
}

function logError (err: unknown): void {
  console.error('bench DM peer:', err)
}

export class DmPeer {
  private messenger: Messenger | undefined
  /** Receiver: when each lat-/rt- text's 'message' event fired. */
  private readonly arrivals = new Map<string, number>()
  /** Sender: when each re- reply arrived. */
  private readonly replies = new Arrivals()
  /** Sender: when each message id was 'delivered', while trackDelivered. */
  private readonly delivered = new Arrivals()
  private trackDelivered = false
  private countDelivered = false
  private tpDelivered = 0
  private deliveredDone: Countdown | undefined
  private tpReceived = 0
  private tpFirstAt = Number.NaN
  private receivedDone: Countdown | undefined
  /** Frames sealed by seal(), in order, for deposit(). */
  private sealed: Array<{ id: MessageId, frame: Uint8Array<ArrayBuffer> }> = []

  /**
   * With `relays`, the Messenger listens only on '/p2p-circuit' (reachable only through the
   * relay, as in test/integration/relay.test.ts) unless `circuitOnly` is false; without, on
   * loopback TCP.
   */
  async start (p: DmStartParams): Promise<DmStarted> {
    if (this.messenger !== undefined) throw new Error('messenger already started')
    const relays = p.relays ?? []
    const relayed = relays.length > 0
    const tcp = '/ip4/127.0.0.1/tcp/0'
    const m = new Messenger({
      dataDir: p.dataDir,
      listen: !relayed ? [tcp] : p.circuitOnly === false ? [tcp, '/p2p-circuit'] : ['/p2p-circuit'],
      ...(relayed ? { relays } : {}),
      mdns: false,
      inboundConnectionThreshold: 1000,
      ...(p.plain === true ? { benchmarkWithoutE2ee: true } : {})
    })
    m.on((e) => { this.onEvent(m, e) })
    if (p.expect !== undefined) this.expect(p.expect)
    const startCalledAt = sharedNow()
    await m.start()
    const startedAt = sharedNow()
    this.messenger = m
    return { peerId: m.peerId, invite: m.whoami().invite, startCalledAt, startedAt }
  }

  private onEvent (m: Messenger, e: MessengerEvent): void {
    const t = sharedNow()
    if (e.event === 'message') {
      const tag = tagOf(e.text)
      if (tag.startsWith('tp-') || tag.startsWith('mb-')) {
        if (this.tpReceived === 0) this.tpFirstAt = t
        this.tpReceived++
        this.receivedDone?.poke()
      } else if (tag.startsWith('lat-')) {
        this.arrivals.set(tag, t)
      } else if (tag.startsWith('rt-')) {
        this.arrivals.set(tag, t)
        m.sendText(e.from, payload(`re-${tag.slice(3)}`, e.text.length)).catch(logError)
      } else if (tag.startsWith('re-')) {
        this.replies.record(tag, t)
      }
    } else if (e.event === 'status' && e.status === 'delivered') {
      if (this.countDelivered) {
        this.tpDelivered++
        this.deliveredDone?.poke()
      } else if (this.trackDelivered) {
        this.delivered.record(e.id, t)
      }
    }
  }

  async addContact (invite: string, name: string): Promise<void> {
    await this.require().addContact(invite, name)
  }

  /**
   * One message at a time: each waits for its 'delivered' status (and in round-trip mode for
   * the reply) before the next is sent, so samples do not overlap.
   */
  async latency (p: DmLatencyParams): Promise<DmLatencyRun> {
    const m = this.require()
    const prefix = p.mode === 'one-way' ? 'lat' : 'rt'
    const run: DmLatencyRun = { tags: [], sentAt: [], resolvedAt: [], deliveredAt: [], replyAt: [] }
    this.trackDelivered = true
    try {
      for (let i = 0; i < p.warmup + p.samples; i++) {
        const tag = `${prefix}-${i}`
        const t0 = sharedNow()
        const view = await m.sendText(p.to, payload(tag, p.messageBytes))
        const t1 = sharedNow()
        const tDelivered = await this.delivered.wait(view.id, p.timeoutMs)
        if (p.mode === 'round-trip') run.replyAt.push(await this.replies.wait(`re-${i}`, p.timeoutMs))
        run.tags.push(tag)
        run.sentAt.push(t0)
        run.resolvedAt.push(t1)
        run.deliveredAt.push(tDelivered)
      }
    } finally {
      this.trackDelivered = false
      this.delivered.clear()
      this.replies.clear()
    }
    return run
  }

  /** Receiver: the arrival times noted so far (tag -> shared clock), then forget them. */
  takeArrivals (): Record<string, number> {
    const out = Object.fromEntries(this.arrivals)
    this.arrivals.clear()
    return out
  }

  /** Receiver: count the next `count` tp- messages from now on. */
  expect (count: number): void {
    this.tpReceived = 0
    this.tpFirstAt = Number.NaN
    this.receivedDone = new Countdown(count, () => this.tpReceived)
  }

  /**
   * Wait until the expected count arrived or `timeoutMs` passed; with `stallMs`, give up
   * as soon as no new message arrived for that long (a drain that failed does not retry
   * before the courier's next poll).
   */
  async waitReceived (timeoutMs: number, stallMs?: number): Promise<DmReceived> {
    const done = this.receivedDone
    if (done === undefined) throw new Error('expect was not called')
    const deadline = sharedNow() + timeoutMs
    let complete = false
    let stalled = false
    for (;;) {
      const left = deadline - sharedNow()
      if (left <= 0) break
      const before = this.tpReceived
      complete = await done.wait(Math.min(left, stallMs ?? left))
      if (complete) break
      if (stallMs !== undefined && this.tpReceived === before) {
        stalled = true
        break
      }
    }
    this.receivedDone = undefined
    return { received: this.tpReceived, complete, stalled, firstAt: this.tpFirstAt, doneAt: done.doneAt ?? sharedNow() }
  }

  /** Sender: `messages` sendText calls, at most maxOutstanding promises pending at once. */
  async blast (p: DmBlastParams): Promise<DmBlastRun> {
    const m = this.require()
    const n = p.messages
    this.tpDelivered = 0
    const done = new Countdown(n, () => this.tpDelivered)
    this.deliveredDone = done
    this.countDelivered = true
    try {
      let next = 0
      const startedAt = sharedNow()
      const worker = async (): Promise<void> => {
        while (next < n) {
          const i = next++
          await m.sendText(p.to, payload(`tp-${i}`, p.messageBytes))
        }
      }
      const workers: Array<Promise<void>> = []
      for (let w = 0; w < Math.min(p.maxOutstanding, n); w++) workers.push(worker())
      await withTimeout(Promise.all(workers), p.timeoutMs, 'sendText calls')
      const enqueuedAt = sharedNow()
      const complete = await done.wait(p.timeoutMs)
      return { startedAt, enqueuedAt, deliveredAt: done.doneAt ?? sharedNow(), delivered: this.tpDelivered, complete }
    } finally {
      this.countDelivered = false
      this.deliveredDone = undefined
    }
  }

  /** One-time prekeys each relay holds for us (a relay is listed once our bundle is published there). */
  prekeysAtRelay (): Record<string, number> {
    return this.require().prekeysAtRelay()
  }

  /** Envelopes this Messenger refused so far, by error name (direct streams and mailbox drains). */
  rejections (): Record<string, number> {
    const m = this.require()
    const out: Record<string, number> = Object.fromEntries(m.rejections)
    for (const [name, n] of Object.entries(m.dmRejections())) out[`stream:${name}`] = n
    return out
  }

  /** Shared clock: when our (first open) connection to `peer` finished its upgrade. */
  connectedAt (peer: string): number | undefined {
    const conns = this.require().libp2p.getConnections(peerIdFromString(peer))
    const times = conns.map((c) => c.timeline.upgraded ?? c.timeline.open)
    if (times.length === 0) return undefined
    // The timeline is in Date.now() ms; move it onto the shared clock.
    return Math.min(...times) - Date.now() + sharedNow()
  }

  /**
   * Seal `count` text envelopes (mb-<i>) for `to` with Messenger.sealEnvelopes, `batch` at a
   * time, and keep the frames for deposit(). Untimed set-up (the elapsed time is reported).
   */
  async seal (p: SealParams): Promise<SealRun> {
    const m = this.require()
    this.sealed = []
    const run: SealRun = { sealed: 0, elapsedMs: 0, kinds: {}, meanBytes: 0 }
    let bytes = 0
    const t0 = sharedNow()
    for (let i = 0; i < p.count; i += p.batch) {
      const envelopes: DmEnvelope[] = []
      for (let j = i; j < Math.min(p.count, i + p.batch); j++) {
        envelopes.push({ id: newMessageId(), lamport: j + 1, sentAt: Date.now(), type: 'text', text: payload(`mb-${j}`, p.messageBytes) })
      }
      const frames = await m.sealEnvelopes(p.to, envelopes)
      frames.forEach((frame, k) => {
        const kind = readSealed(frame).kind
        run.kinds[kind] = (run.kinds[kind] ?? 0) + 1
        bytes += frame.byteLength
        this.sealed.push({ id: (envelopes[k] as DmEnvelope).id, frame })
      })
    }
    run.elapsedMs = sharedNow() - t0
    run.sealed = this.sealed.length
    run.meanBytes = run.sealed > 0 ? bytes / run.sealed : 0
    return run
  }

  /** Deposit sealed frames [from, from + count) at a relay for `recipient`, from this node (timed). */
  async deposit (p: DepositSealedParams): Promise<DepositRun> {
    const frames = this.sealed.slice(p.from, p.from + p.count)
    if (frames.length < p.count) throw new Error(`only ${this.sealed.length} frames sealed, asked for [${p.from}, ${p.from + p.count})`)
    const client = new MailboxClient(this.require().libp2p)
    return await depositAll(client, p.relayId as PeerIdString, frames.length, p.batchSize, p.parallel, (i) => {
      const f = frames[i] as { id: MessageId, frame: Uint8Array<ArrayBuffer> }
      return { recipient: p.recipient, id: f.id, envelope: f.frame }
    })
  }

  async stop (): Promise<void> {
    const m = this.messenger
    this.messenger = undefined
    await m?.stop()
  }

  private require (): Messenger {
    if (this.messenger === undefined) throw new Error('messenger not started')
    return this.messenger
  }
}
