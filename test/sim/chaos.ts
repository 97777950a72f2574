/**
 * Chaos simulation (RELIABILITY.md, "nothing lost"): real `parley node` processes on loopback
 * TCP, each with its own level database, and a real `parley relay` whose mailbox holds what
 * is sent to a peer that is down. They send DMs to their contacts while a chosen share of
 * them is killed with SIGKILL at random moments and restarted on the same data dir and port.
 * Then every peer comes back and the run checks, per conversation:
 * - lost: a `dm.send` that was answered (acknowledged) whose message never shows up in the
 *   recipient's history;
 * - shown twice: an id twice in a history, a text under two ids, or two `message` events for
 *   one id (over all of the recipient's lives);
 * - order: the recipient's history shows a sender's messages in the order they were sent;
 * - receipts: the sender's own history says `delivered` for every acknowledged message.
 * A `dm.send` whose process died before it answered may or may not have been kept; such a
 * message may arrive, once, or not at all.
 *
 * `npm run sim` runs the full scenario (20 peers, 10,000 DMs, 30% of them killed; see
 * run.ts); test/integration/chaos.test.ts runs a short one in `npm test`.
 */
import { freePort, type Cluster, type Line, type NodeProcess } from '../helpers/node-process.js'
import { Rng } from '../helpers/prng.js'
import type { MessageView } from '../../core/api/contract.js'
import { MAX_HISTORY_LIMIT } from '../../core/api/contract.js'

export interface ChaosOptions {
  peers: number
  /** DMs to send in all. */
  messages: number
  /** Share of the peers that get killed (0..1); the others stay up throughout. */
  killFraction: number
  /** Mean gap between kills while messages are being sent (ms; exponentially distributed). */
  killEveryMs: number
  /** A killed peer stays down for a time drawn uniformly from this range (ms). */
  downMs: { min: number, max: number }
  /** Each peer's conversation partners: its neighbours on a ring, this many (even). */
  contactsPerPeer: number
  /** Pause of each peer between two of its sends (ms; 0: as fast as it answers). */
  sendGapMs: number
  seed: number
  /** How long every acknowledged message may take to show up once all peers are back (ms). */
  settleTimeoutMs: number
  log: (line: string) => void
}

export interface ChaosReport {
  peers: number
  victims: number
  messages: number
  /** `dm.send`s answered with an id. */
  acknowledged: number
  /** `dm.send`s whose process was killed before it answered. */
  unanswered: number
  /** Of those, how many showed up at their recipient anyway (at most once each). */
  unansweredDelivered: number
  kills: number
  /** Kills that landed while the victim had a `dm.send` in flight. */
  killsMidSend: number
  sendPhaseMs: number
  /** From the last peer's restart to the moment every acknowledged message was shown. */
  settleMs: number
  settled: boolean
  lost: number
  shownTwice: number
  outOfOrder: number
  /** Acknowledged messages whose sender does not (yet) say `delivered`. */
  notDeliveredAtSender: number
  /** A few examples of each failure, for the report. */
  problems: string[]
}

/** One peer over its lives (each kill -9 and restart is a new process). */
interface Slot {
  index: number
  label: string
  port: number
  peerId: string
  node: NodeProcess
  /** Every process this peer has been, oldest first. */
  lives: NodeProcess[]
  up: boolean
  victim: boolean
  /** A dm.send of this peer is waiting for its answer. */
  sending: boolean
  partners: number[]
  /** Next sequence number of the messages to each partner. */
  nextSeq: Map<number, number>
}

interface Sent {
  from: number
  to: number
  seq: number
  text: string
  id?: string
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** The text of message `seq` from peer `from` to peer `to`: unique in the run, and it carries its own order. */
export function chaosText (from: number, to: number, seq: number): string {
  return `chaos ${from}>${to} #${seq}`
}

function seqOf (text: string): number | undefined {
  const m = /^chaos \d+>\d+ #(\d+)$/.exec(text)
  return m === null ? undefined : Number(m[1])
}

/** The ring neighbours of each peer: `k / 2` on each side. */
function ringPartners (peers: number, k: number): number[][] {
  const half = Math.max(1, Math.min(Math.floor(k / 2), Math.floor((peers - 1) / 2)))
  return Array.from({ length: peers }, (_, i) => {
    const out = new Set<number>()
    for (let d = 1; d <= half; d++) {
      out.add((i + d) % peers)
      out.add((i - d + peers) % peers)
    }
    out.delete(i)
    return [...out].sort((a, b) => a - b)
  })
}

export async function runChaos (o: ChaosOptions, cluster: Cluster): Promise<ChaosReport> {
  const rng = new Rng(o.seed)
  const relay = await cluster.start({ command: 'relay', label: 'relay', port: await freePort() })
  const relayAddr = relay.ready.addrs[0]
  if (relayAddr === undefined) throw new Error('the relay printed no address')
  const partners = ringPartners(o.peers, o.contactsPerPeer)
  const victimCount = Math.round(o.peers * o.killFraction)
  const victims = new Set(rng.shuffle(Array.from({ length: o.peers }, (_, i) => i)).slice(0, victimCount))

  const startPeer = async (index: number, port: number, dataDir?: string): Promise<NodeProcess> => {
    const options = {
      label: `p${index}`,
      name: `p${index}`,
      listen: [`/ip4/127.0.0.1/tcp/${port}`, '/p2p-circuit'],
      extraArgs: ['--relay', relayAddr],
      readyTimeoutMs: 60_000
    }
    return dataDir === undefined ? await cluster.start({ ...options, port }) : await cluster.start({ ...options, port, dataDir })
  }

  // Start the peers a few at a time (each start loads libsignal, opens level, dials the relay).
  const slots: Slot[] = []
  for (let i = 0; i < o.peers; i += 4) {
    const batch = await Promise.all(Array.from({ length: Math.min(4, o.peers - i) }, async (_, j) => {
      const index = i + j
      const port = await freePort()
      const node = await startPeer(index, port)
      const slot: Slot = { index, label: `p${index}`, port, peerId: node.ready.peerId, node, lives: [node], up: true, victim: victims.has(index), sending: false, partners: partners[index] ?? [], nextSeq: new Map() }
      return slot
    }))
    slots.push(...batch)
  }
  o.log(`${o.peers} peers up (${victimCount} to be killed: ${[...victims].sort((a, b) => a - b).map((v) => `p${v}`).join(' ')}), relay ${relayAddr}`)

  // Contacts both ways, from invites that carry each peer's TCP and relay-circuit addresses.
  const invites = await Promise.all(slots.map(async (s) => (await s.node.call('whoami', {})).invite))
  for (const s of slots) {
    for (const p of s.partners) await s.node.call('contact.add', { invite: invites[p] ?? '' })
  }
  o.log('contacts added')

  const sent: Sent[] = []
  let started = 0
  let sendingDone = false
  let kills = 0
  let killsMidSend = 0

  const sender = async (s: Slot): Promise<void> => {
    while (started < o.messages) {
      if (!s.up || s.partners.length === 0) {
        await sleep(20)
        continue
      }
      const to = s.partners[rng.int(s.partners.length)] as number
      const seq = s.nextSeq.get(to) ?? 0
      s.nextSeq.set(to, seq + 1)
      const entry: Sent = { from: s.index, to, seq, text: chaosText(s.index, to, seq) }
      sent.push(entry)
      started++
      const node = s.node
      s.sending = true
      try {
        entry.id = (await node.call('dm.send', { to: slots[to]?.peerId ?? '', text: entry.text }, 30_000)).id
      } catch (err) {
        // Killed before it answered: unanswered. Anything else is a real failure.
        if (node.running) throw err
      } finally {
        s.sending = false
      }
      if (o.sendGapMs > 0) await sleep(o.sendGapMs)
    }
  }

  const restart = async (s: Slot): Promise<void> => {
    const node = await startPeer(s.index, s.port, s.node.dataDir)
    if (node.ready.peerId !== s.peerId) throw new Error(`${s.label} came back as ${node.ready.peerId}`)
    s.node = node
    s.lives.push(node)
    s.up = true
  }

  const downs: Array<Promise<void>> = []
  const chaos = async (): Promise<void> => {
    if (victims.size === 0) return
    while (!sendingDone) {
      await sleep(-Math.log(1 - rng.next()) * o.killEveryMs)
      if (sendingDone) break
      const candidates = slots.filter((s) => s.victim && s.up)
      const s = candidates[rng.int(candidates.length)]
      if (s === undefined) continue
      s.up = false
      if (s.sending) killsMidSend++
      kills++
      await s.node.kill9()
      const downFor = o.downMs.min + rng.next() * (o.downMs.max - o.downMs.min)
      downs.push(sleep(downFor).then(async () => { await restart(s) }))
    }
  }

  const t0 = Date.now()
  const chaosRun = chaos()
  try {
    await Promise.all(slots.map(async (s) => { await sender(s) }))
  } finally {
    sendingDone = true
    await chaosRun
    await Promise.all(downs)
  }
  const sendPhaseMs = Date.now() - t0
  o.log(`sent ${sent.length} in ${sendPhaseMs} ms with ${kills} kills (${killsMidSend} mid-send); all peers up again`)

  // Settle: every acknowledged message in its recipient's history, and delivered at its sender.
  const acked = sent.filter((m) => m.id !== undefined)
  const settleStart = Date.now()
  let histories = new Map<string, MessageView[]>()
  let settled = false
  let lastProgress = Date.now()
  while (Date.now() - settleStart < o.settleTimeoutMs) {
    histories = await readHistories(slots)
    const missing = acked.filter((m) => !shown(histories, m))
    const unreceipted = acked.filter((m) => !deliveredAtSender(histories, m))
    if (missing.length === 0 && unreceipted.length === 0) {
      settled = true
      break
    }
    if (Date.now() - lastProgress >= 5000) {
      lastProgress = Date.now()
      o.log(`settling: ${missing.length} not shown yet (${describe(missing, histories)}), ${unreceipted.length} not delivered at the sender (${describe(unreceipted, histories)})`)
    }
    await sleep(500)
  }
  const settleMs = Date.now() - settleStart
  // Room for a late duplicate to show itself.
  await sleep(1000)
  histories = await readHistories(slots)

  const problems: string[] = []
  const note = (p: string): void => { if (problems.length < 20) problems.push(p) }
  let lost = 0
  let notDeliveredAtSender = 0
  for (const m of acked) {
    if (!shown(histories, m)) {
      lost++
      note(`lost: ${m.text} (${m.id ?? ''})`)
    } else if (!deliveredAtSender(histories, m)) {
      notDeliveredAtSender++
      note(`not delivered at sender: ${m.text}`)
    }
  }
  const unanswered = sent.filter((m) => m.id === undefined)
  const unansweredDelivered = unanswered.filter((m) => (histories.get(key(m.to, m.from)) ?? []).some((v) => v.text === m.text)).length

  let shownTwice = 0
  let outOfOrder = 0
  for (const s of slots) {
    for (const p of s.partners) {
      const inbound = (histories.get(key(s.index, p)) ?? []).filter((v) => v.direction === 'in')
      const ids = new Set<string>()
      const texts = new Set<string>()
      let lastSeq = -1
      for (const v of inbound) {
        if (ids.has(v.id) || texts.has(v.text)) {
          shownTwice++
          note(`shown twice at ${s.label}: ${v.text} (${v.id})`)
        }
        ids.add(v.id)
        texts.add(v.text)
        const seq = seqOf(v.text)
        if (seq === undefined || seq <= lastSeq) {
          outOfOrder++
          note(`out of order at ${s.label}: ${v.text} after #${lastSeq}`)
        }
        lastSeq = seq ?? lastSeq
      }
    }
    const events = new Map<string, number>()
    for (const life of s.lives) {
      for (const e of life.events) if (isMessageEvent(e)) events.set(e.id, (events.get(e.id) ?? 0) + 1)
    }
    for (const [id, n] of events) {
      if (n > 1) {
        shownTwice++
        note(`${n} message events for ${id} at ${s.label}`)
      }
    }
  }

  return {
    peers: o.peers,
    victims: victimCount,
    messages: sent.length,
    acknowledged: acked.length,
    unanswered: unanswered.length,
    unansweredDelivered,
    kills,
    killsMidSend,
    sendPhaseMs,
    settleMs,
    settled,
    lost,
    shownTwice,
    outOfOrder,
    notDeliveredAtSender,
    problems
  }
}

/** How many of `list` each conversation has (with their status at the sender if `histories` is given), e.g. `3>4 sent: 12`. */
function describe (list: Sent[], histories?: Map<string, MessageView[]>): string {
  const counts = new Map<string, number>()
  for (const m of list) {
    const status = histories?.get(key(m.from, m.to))?.find((v) => v.id === m.id)?.status
    const k = `${m.from}>${m.to}${status === undefined ? '' : ` ${status}`}`
    counts.set(k, (counts.get(k) ?? 0) + 1)
  }
  return [...counts].slice(0, 8).map(([k, n]) => `${k}: ${n}`).join(', ')
}

function key (at: number, other: number): string {
  return `${at}/${other}`
}

function isMessageEvent (e: Line): e is Line & { id: string } {
  return e.event === 'message' && typeof e.id === 'string'
}

function shown (h: Map<string, MessageView[]>, m: Sent): boolean {
  return (h.get(key(m.to, m.from)) ?? []).some((v) => v.id === m.id && v.text === m.text && v.direction === 'in')
}

function deliveredAtSender (h: Map<string, MessageView[]>, m: Sent): boolean {
  return (h.get(key(m.from, m.to)) ?? []).some((v) => v.id === m.id && v.status === 'delivered')
}

/** Every peer's whole history with each partner, oldest first (paged). */
async function readHistories (slots: Slot[]): Promise<Map<string, MessageView[]>> {
  const out = new Map<string, MessageView[]>()
  await Promise.all(slots.map(async (s) => {
    for (const p of s.partners) {
      const peer = slots[p]?.peerId ?? ''
      let all: MessageView[] = []
      let before: string | undefined
      for (;;) {
        const params = before === undefined ? { with: peer, limit: MAX_HISTORY_LIMIT } : { with: peer, limit: MAX_HISTORY_LIMIT, before }
        const page = (await s.node.call('dm.history', params)).messages
        all = [...page, ...all]
        if (page.length < MAX_HISTORY_LIMIT) break
        before = page[0]?.id
      }
      out.set(key(s.index, p), all)
    }
  }))
  return out
}
