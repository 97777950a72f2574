/**
 * One side of the DM scenario: a real Messenger with its own level database, playing sender
 * (A) or receiver (B) as the orchestrator (dm.ts) asks. Runs in a peer process
 * (peer-process.ts) or, for the in-process figures, twice in the harness's own process. Texts
 * are payload() strings whose tag says what they are for:
 *   lat-<i>  latency, one way: the receiver notes when its 'message' event fired
 *   rt-<i>   latency, round trip: the receiver notes the time and at once replies re-<i>
 *   re-<i>   the reply: the sender notes when its 'message' event fired
 *   tp-<i>   throughput: the receiver only counts them
 * Every timestamp is on the shared clock (sharedNow).
 */
import type { MessengerEvent } from '../../../core/api/contract.js'
import { Messenger } from '../../../core/messenger.js'
import { Arrivals, Countdown, payload, sharedNow, tagOf, withTimeout } from '../util.js'

export interface DmStarted {
  peerId: string
  invite: string
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

  /**
   * With `relays`, the Messenger listens only on '/p2p-circuit' (reachable only through the
   * relay, as in test/integration/relay.test.ts); without, on loopback TCP.
   */
  async start (dataDir: string, relays?: string[]): Promise<DmStarted> {
    if (this.messenger !== undefined) throw new Error('messenger already started')
    const relayed = relays !== undefined && relays.length > 0
    const m = new Messenger({
      dataDir,
      listen: relayed ? ['/p2p-circuit'] : ['/ip4/127.0.0.1/tcp/0'],
      ...(relayed ? { relays } : {}),
      mdns: false,
      inboundConnectionThreshold: 1000
    })
    m.on((e) => { this.onEvent(m, e) })
    await m.start()
    this.messenger = m
    return { peerId: m.peerId, invite: m.whoami().invite }
  }

  private onEvent (m: Messenger, e: MessengerEvent): void {
    const t = sharedNow()
    if (e.event === 'message') {
      const tag = tagOf(e.text)
      if (tag.startsWith('tp-')) {
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

  async waitReceived (timeoutMs: number): Promise<DmReceived> {
    const done = this.receivedDone
    if (done === undefined) throw new Error('expect was not called')
    const complete = await done.wait(timeoutMs)
    this.receivedDone = undefined
    return { received: this.tpReceived, complete, firstAt: this.tpFirstAt, doneAt: done.doneAt ?? sharedNow() }
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
