/**
 * Chaos simulation (RELIABILITY.md, "nothing lost"): real `parley node` processes on loopback
 * TCP, each with its own level database, and a real `parley relay` whose mailbox holds what
 * is sent to a peer that is down. They send messages while a chosen share of them is killed
 * with SIGKILL at random moments and restarted on the same data dir and port. Then every peer
 * comes back and the run checks what each peer shows. Two scenarios:
 * - `dm`: each peer writes DMs to its contacts (its ring neighbours). Per conversation: lost
 *   (a `dm.send` that was answered, i.e. acknowledged, whose message never shows up in the
 *   recipient's history); shown twice (an id twice in a history, a text under two ids, or
 *   two `message` events for one id over all of the recipient's lives); order (the recipient
 *   shows a sender's messages in the order they were sent); receipts (the sender's own
 *   history says `delivered` for every acknowledged message).
 * - `group`: all peers are members of one group (created by p0, every invite accepted) and
 *   write to it. Every acknowledged `group.send` must show up at every member, once (history
 *   and `group.message` events), each author's messages in the order it sent them, and every
 *   member must show the same messages in the same order.
 * A send whose process died before it answered may or may not have been kept; such a
 * message may arrive (once, and then everywhere), or not at all.
 *
 * `npm run sim` runs the full scenarios (20 peers, 30% of them killed; see run.ts);
 * test/integration/chaos.test.ts runs short ones in `npm test`.
 */
import { freePort, type Cluster, type NodeProcess, type StartOptions } from '../helpers/node-process.js'
import { Rng } from '../helpers/prng.js'
import type { MessageView } from '../../core/api/contract.js'
import { MAX_HISTORY_LIMIT } from '../../core/api/contract.js'

export type ChaosScenario = 'dm' | 'group'

export interface ChaosOptions {
  scenario: ChaosScenario
  peers: number
  /** Messages to send in all. */
  messages: number
  /** Share of the peers that get killed (0..1); the others stay up throughout. */
  killFraction: number
  /** Mean gap between kills while messages are being sent (ms; exponentially distributed). */
  killEveryMs: number
  /** A killed peer stays down for a time drawn uniformly from this range (ms). */
  downMs: { min: number, max: number }
  /** dm: each peer's conversation partners are its neighbours on a ring, this many (even). */
  contactsPerPeer: number
  /** Pause of each peer between two of its sends (ms; 0: as fast as it answers). */
  sendGapMs: number
  seed: number
  /** How long every acknowledged message may take to show up once all peers are back (ms). */
  settleTimeoutMs: number
  log: (line: string) => void
}

export interface ChaosReport {
  scenario: ChaosScenario
  peers: number
  victims: number
  messages: number
  /** Sends answered with an id. */
  acknowledged: number
  /** Sends whose process was killed before it answered. */
  unanswered: number
  /** Of those, how many showed up at their recipients anyway (at most once each). */
  unansweredDelivered: number
  kills: number
  /** Kills that landed while the victim had a send in flight. */
  killsMidSend: number
  /** Setting up contacts (and the group) before the first message (ms). */
  setupMs: number
  sendPhaseMs: number
  /** From the last peer's restart to the moment every acknowledged message was shown. */
  settleMs: number
  settled: boolean
  /** Acknowledged messages missing at a recipient (dm) or at a member (group: counted per member). */
  lost: number
  shownTwice: number
  outOfOrder: number
  /** group: members whose history is not in the same order as p0's. */
  divergent: number
  /** dm: acknowledged messages whose sender does not say `delivered`. */
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
  /** A send of this peer is waiting for its answer. */
  sending: boolean
  /** dm: the peers it writes to. */
  partners: number[]
  /** Next sequence number of its messages to each partner (dm; group: key -1). */
  nextSeq: Map<number, number>
}

interface Sent {
  from: number
  /** dm: the recipient; group: -1. */
  to: number
  seq: number
  text: string
  id?: string
}

/** What a scenario does besides starting, killing and restarting peers. */
interface Scenario {
  setup: () => Promise<void>
  /** The next message of `s`, or undefined if it has nobody to write to. */
  next: (s: Slot) => Sent | undefined
  /** Send it; resolves with its id (throws if the process dies first). */
  send: (node: NodeProcess, m: Sent) => Promise<string>
  /** Read what every peer shows now. */
  read: () => Promise<Shown>
  /** What is not yet everywhere it should be (0 when settled), and a description for progress lines. */
  pending: (shown: Shown, acked: Sent[]) => { waiting: number, describe: () => string }
  /** Count the failures. */
  check: (shown: Shown, sent: Sent[], note: (p: string) => void) => Counts
  /** The event name a peer shows a message with. */
  event: string
}

/** Histories by `<peer>/<partner>` (dm) or `<peer>` (group). */
type Shown = Map<string, MessageView[]>

interface Counts {
  lost: number
  shownTwice: number
  outOfOrder: number
  divergent: number
  notDeliveredAtSender: number
  unansweredDelivered: number
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** The text of message `seq` from peer `from` to peer `to` (-1: the group): unique in the run, and it carries its own order. */
export function chaosText (from: number, to: number, seq: number): string {
  return to < 0 ? `chaos ${from}>group #${seq}` : `chaos ${from}>${to} #${seq}`
}

function seqOf (text: string): number | undefined {
  const m = /^chaos \d+>(?:\d+|group) #(\d+)$/.exec(text)
  return m === null ? undefined : Number(m[1])
}

function authorOf (text: string): string | undefined {
  return /^chaos (\d+)>/.exec(text)?.[1]
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
  const partners = o.scenario === 'dm'
    ? ringPartners(o.peers, o.contactsPerPeer)
    // group: p0 (the admin) and every member are contacts; members meet each other in the group.
    : Array.from({ length: o.peers }, (_, i) => i === 0 ? Array.from({ length: o.peers - 1 }, (_, j) => j + 1) : [0])
  const victimCount = Math.round(o.peers * o.killFraction)
  const victims = new Set(rng.shuffle(Array.from({ length: o.peers }, (_, i) => i)).slice(0, victimCount))

  // How every peer runs, on its fixed port (restarts keep it, and its data dir: Cluster.restart).
  const peerOptions = (index: number, port: number): StartOptions => ({
    label: `p${index}`,
    name: `p${index}`,
    listen: [`/ip4/127.0.0.1/tcp/${port}`, '/p2p-circuit'],
    extraArgs: ['--relay', relayAddr],
    readyTimeoutMs: 60_000
  })

  // Start the peers a few at a time (each start loads libsignal, opens level, dials the relay).
  const slots: Slot[] = []
  for (let i = 0; i < o.peers; i += 4) {
    const batch = await Promise.all(Array.from({ length: Math.min(4, o.peers - i) }, async (_, j) => {
      const index = i + j
      const port = await freePort()
      const node = await cluster.start({ ...peerOptions(index, port), port })
      const slot: Slot = { index, label: `p${index}`, port, peerId: node.ready.peerId, node, lives: [node], up: true, victim: victims.has(index), sending: false, partners: partners[index] ?? [], nextSeq: new Map() }
      return slot
    }))
    slots.push(...batch)
  }
  o.log(`${o.peers} peers up (${victimCount} to be killed: ${[...victims].sort((a, b) => a - b).map((v) => `p${v}`).join(' ')}), relay ${relayAddr}`)

  const setupStart = Date.now()
  // Contacts both ways, from invites that carry each peer's TCP and relay-circuit addresses.
  const invites = await Promise.all(slots.map(async (s) => (await s.node.call('whoami', {})).invite))
  for (const s of slots) {
    for (const p of s.partners) await s.node.call('contact.add', { invite: invites[p] ?? '' })
  }
  const scenario = o.scenario === 'dm' ? dmScenario(slots, rng) : groupScenario(slots, o.log)
  await scenario.setup()
  const setupMs = Date.now() - setupStart
  o.log(`set up in ${setupMs} ms`)

  const sent: Sent[] = []
  let started = 0
  let sendingDone = false
  let kills = 0
  let killsMidSend = 0

  const sender = async (s: Slot): Promise<void> => {
    while (started < o.messages) {
      const entry = s.up ? scenario.next(s) : undefined
      if (entry === undefined) {
        await sleep(20)
        continue
      }
      sent.push(entry)
      started++
      const node = s.node
      s.sending = true
      try {
        entry.id = await scenario.send(node, entry)
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
    const node = await cluster.restart(s.node, peerOptions(s.index, s.port))
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

  const acked = sent.filter((m) => m.id !== undefined)
  const settleStart = Date.now()
  let settled = false
  let lastProgress = Date.now()
  while (Date.now() - settleStart < o.settleTimeoutMs) {
    const p = scenario.pending(await scenario.read(), acked)
    if (p.waiting === 0) {
      settled = true
      break
    }
    if (Date.now() - lastProgress >= 5000) {
      lastProgress = Date.now()
      o.log(`settling: ${p.describe()}`)
    }
    await sleep(500)
  }
  const settleMs = Date.now() - settleStart
  // Room for a late duplicate to show itself.
  await sleep(1000)

  const problems: string[] = []
  const note = (p: string): void => { if (problems.length < 20) problems.push(p) }
  const counts = scenario.check(await scenario.read(), sent, note)
  let shownTwiceEvents = 0
  for (const s of slots) {
    const events = new Map<string, number>()
    for (const life of s.lives) {
      for (const e of life.events) if (e.event === scenario.event && typeof e.id === 'string') events.set(e.id, (events.get(e.id) ?? 0) + 1)
    }
    for (const [id, n] of events) {
      if (n > 1) {
        shownTwiceEvents++
        note(`${n} ${scenario.event} events for ${id} at ${s.label}`)
      }
    }
  }

  return {
    scenario: o.scenario,
    peers: o.peers,
    victims: victimCount,
    messages: sent.length,
    acknowledged: acked.length,
    unanswered: sent.length - acked.length,
    unansweredDelivered: counts.unansweredDelivered,
    kills,
    killsMidSend,
    setupMs,
    sendPhaseMs,
    settleMs,
    settled,
    lost: counts.lost,
    shownTwice: counts.shownTwice + shownTwiceEvents,
    outOfOrder: counts.outOfOrder,
    divergent: counts.divergent,
    notDeliveredAtSender: counts.notDeliveredAtSender,
    problems
  }
}

/** DMs to ring neighbours, checked per conversation. */
function dmScenario (slots: Slot[], rng: Rng): Scenario {
  const shownAt = (h: Shown, m: Sent): boolean =>
    (h.get(key(m.to, m.from)) ?? []).some((v) => v.id === m.id && v.text === m.text && v.direction === 'in')
  const deliveredAtSender = (h: Shown, m: Sent): boolean =>
    (h.get(key(m.from, m.to)) ?? []).some((v) => v.id === m.id && v.status === 'delivered')
  return {
    event: 'message',
    setup: async () => {},
    next: (s) => {
      if (s.partners.length === 0) return undefined
      const to = s.partners[rng.int(s.partners.length)] as number
      const seq = s.nextSeq.get(to) ?? 0
      s.nextSeq.set(to, seq + 1)
      return { from: s.index, to, seq, text: chaosText(s.index, to, seq) }
    },
    send: async (node, m) => (await node.call('dm.send', { to: slots[m.to]?.peerId ?? '', text: m.text }, 30_000)).id,
    read: async () => {
      const out: Shown = new Map()
      await Promise.all(slots.map(async (s) => {
        for (const p of s.partners) {
          const peer = slots[p]?.peerId ?? ''
          out.set(key(s.index, p), await paged(async (before) => (await s.node.call('dm.history', before === undefined ? { with: peer, limit: MAX_HISTORY_LIMIT } : { with: peer, limit: MAX_HISTORY_LIMIT, before })).messages))
        }
      }))
      return out
    },
    pending: (h, acked) => {
      const missing = acked.filter((m) => !shownAt(h, m))
      const other = acked.filter((m) => !deliveredAtSender(h, m))
      return { waiting: missing.length + other.length, describe: () => `${missing.length} not shown yet (${describe(missing, h)}), ${other.length} not delivered at the sender (${describe(other, h)})` }
    },
    check: (h, sent, note) => {
      const c = { lost: 0, shownTwice: 0, outOfOrder: 0, divergent: 0, notDeliveredAtSender: 0, unansweredDelivered: 0 }
      for (const m of sent) {
        if (m.id === undefined) {
          if ((h.get(key(m.to, m.from)) ?? []).some((v) => v.text === m.text)) c.unansweredDelivered++
        } else if (!shownAt(h, m)) {
          c.lost++
          note(`lost: ${m.text} (${m.id})`)
        } else if (!deliveredAtSender(h, m)) {
          c.notDeliveredAtSender++
          note(`not delivered at sender: ${m.text}`)
        }
      }
      for (const s of slots) {
        for (const p of s.partners) {
          const inbound = (h.get(key(s.index, p)) ?? []).filter((v) => v.direction === 'in')
          const r = checkSequence(inbound, s.label, note)
          c.shownTwice += r.twice
          c.outOfOrder += r.outOfOrder
        }
      }
      return c
    }
  }
}

/** One group of every peer, created by p0; everyone writes to it. */
function groupScenario (slots: Slot[], log: (line: string) => void): Scenario {
  let group = ''
  const admin = slots[0] as Slot
  return {
    event: 'group.message',
    setup: async () => {
      const since = slots.map((s) => s.node.mark())
      group = (await admin.node.call('group.create', { name: 'chaos', members: slots.slice(1).map((s) => s.peerId) })).group
      await Promise.all(slots.slice(1).map(async (s) => {
        await s.node.waitFor((l) => l.event === 'group.invite' && l.group === group, 60_000, { since: since[s.index], description: 'the group invite' })
        await s.node.call('group.accept', { group })
      }))
      // Everyone sees everyone before the first message (the sender keys follow on their own).
      await Promise.all(slots.map(async (s) => {
        await s.node.poll(async () => (await s.node.call('group.members', { group })).members.length === slots.length ? true : undefined, 120_000, `${s.label} seeing all ${slots.length} members`, 250)
      }))
      log(`group ${group} of ${slots.length} formed`)
    },
    next: (s) => {
      const seq = s.nextSeq.get(-1) ?? 0
      s.nextSeq.set(-1, seq + 1)
      return { from: s.index, to: -1, seq, text: chaosText(s.index, -1, seq) }
    },
    send: async (node, m) => (await node.call('group.send', { group, text: m.text }, 30_000)).id,
    read: async () => {
      const out: Shown = new Map()
      await Promise.all(slots.map(async (s) => {
        out.set(String(s.index), await paged(async (before) => (await s.node.call('group.history', before === undefined ? { group, limit: MAX_HISTORY_LIMIT } : { group, limit: MAX_HISTORY_LIMIT, before })).messages))
      }))
      return out
    },
    // Settled when every member shows every acknowledged message and every message any member
    // shows (an unanswered send that was kept reaches the others too, by group-sync at the latest).
    pending: (h, acked) => {
      const all = new Set(acked.map((m) => m.id ?? ''))
      for (const list of h.values()) for (const v of list) all.add(v.id)
      let waiting = 0
      const at = new Map<string, number>()
      for (const s of slots) {
        const ids = new Set((h.get(String(s.index)) ?? []).map((v) => v.id))
        let gone = 0
        for (const id of all) if (!ids.has(id)) gone++
        if (gone > 0) at.set(s.label, gone)
        waiting += gone
      }
      return { waiting, describe: () => `${waiting} (member, message) pairs missing: ${[...at].slice(0, 10).map(([l, n]) => `${l}: ${n}`).join(', ')}` }
    },
    check: (h, sent, note) => {
      const c = { lost: 0, shownTwice: 0, outOfOrder: 0, divergent: 0, notDeliveredAtSender: 0, unansweredDelivered: 0 }
      const reference = (h.get('0') ?? []).map((v) => v.id)
      for (const s of slots) {
        const history = h.get(String(s.index)) ?? []
        const ids = new Set(history.map((v) => v.id))
        for (const m of sent) {
          if (m.id !== undefined && !ids.has(m.id)) {
            c.lost++
            note(`lost at ${s.label}: ${m.text} (${m.id})`)
          }
        }
        // Per author: once each, in its sending order.
        const byAuthor = new Map<string, MessageView[]>()
        for (const v of history) {
          const a = authorOf(v.text) ?? '?'
          byAuthor.set(a, [...(byAuthor.get(a) ?? []), v])
        }
        for (const list of byAuthor.values()) {
          const r = checkSequence(list, s.label, note)
          c.shownTwice += r.twice
          c.outOfOrder += r.outOfOrder
        }
        const order = history.map((v) => v.id)
        if (order.length !== reference.length || order.some((id, i) => id !== reference[i])) {
          c.divergent++
          note(`${s.label} shows ${order.length} messages in another order than p0's ${reference.length}`)
        }
      }
      const everywhere = new Set(reference)
      c.unansweredDelivered = sent.filter((m) => m.id === undefined && (h.get('0') ?? []).some((v) => v.text === m.text && everywhere.has(v.id))).length
      return c
    }
  }
}

/** Ids and texts once each, and sequence numbers rising, in one sender's messages as shown. */
function checkSequence (list: MessageView[], label: string, note: (p: string) => void): { twice: number, outOfOrder: number } {
  let twice = 0
  let outOfOrder = 0
  const ids = new Set<string>()
  const texts = new Set<string>()
  let lastSeq = -1
  for (const v of list) {
    if (ids.has(v.id) || texts.has(v.text)) {
      twice++
      note(`shown twice at ${label}: ${v.text} (${v.id})`)
    }
    ids.add(v.id)
    texts.add(v.text)
    const seq = seqOf(v.text)
    if (seq === undefined || seq <= lastSeq) {
      outOfOrder++
      note(`out of order at ${label}: ${v.text} after #${lastSeq}`)
    }
    lastSeq = seq ?? lastSeq
  }
  return { twice, outOfOrder }
}

/** How many of `list` each conversation has (with their status at the sender), e.g. `3>4 sent: 12`. */
function describe (list: Sent[], h: Shown): string {
  const counts = new Map<string, number>()
  for (const m of list) {
    const status = h.get(key(m.from, m.to))?.find((v) => v.id === m.id)?.status
    const k = `${m.from}>${m.to}${status === undefined ? '' : ` ${status}`}`
    counts.set(k, (counts.get(k) ?? 0) + 1)
  }
  return [...counts].slice(0, 8).map(([k, n]) => `${k}: ${n}`).join(', ')
}

function key (at: number, other: number): string {
  return `${at}/${other}`
}

/** A whole history, oldest first, read a page at a time (newest page first). */
async function paged<T extends { id: string }> (page: (before: string | undefined) => Promise<T[]>): Promise<T[]> {
  let all: T[] = []
  let before: string | undefined
  for (;;) {
    const p = await page(before)
    all = [...p, ...all]
    if (p.length < MAX_HISTORY_LIMIT) return all
    before = p[0]?.id
  }
}
