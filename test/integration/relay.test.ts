import '../../core/polyfill.js'
import { afterEach, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { newMessageId, type PeerIdString } from '../../core/ids.js'
import { MailboxClient } from '../../core/protocols/mailbox/client.js'
import { Cluster, freePort, type NodeProcess } from '../helpers/node-process.js'
import { removeDir, startPeer } from '../helpers/messengers.js'

// Real processes on loopback: a `parley relay` and `parley node`s that listen only on
// /p2p-circuit, so the relay is the only way they can reach each other.
let cluster = new Cluster()
/** In-process peers and the like, stopped after each test. */
let afterCleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const f of afterCleanup) await f()
  afterCleanup = []
  await cluster.cleanup()
  cluster = new Cluster()
})

async function httpGet (url: string): Promise<{ status: number, body: string }> {
  return await new Promise((resolve, reject) => {
    request(url, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
    }).on('error', reject).end()
  })
}

async function relayedPair (relay: NodeProcess): Promise<[NodeProcess, NodeProcess]> {
  const relayAddr = relay.ready.addrs[0] ?? ''
  const opts = { listen: ['/p2p-circuit'], extraArgs: ['--relay', relayAddr] }
  const a = await cluster.start({ ...opts, label: 'A' })
  const b = await cluster.start({ ...opts, label: 'B' })
  return [a, b]
}

/**
 * A relay, B connected to it (online, on its circuit only), and a real sender in this
 * process that seals to B with a session made from B's bundle at R and deposits straight
 * into B's mailbox there (stopped after the test).
 */
async function mailboxDepositor (): Promise<{ b: NodeProcess, depositor: Awaited<ReturnType<typeof startPeer>>, deposit: (text: string) => Promise<string> }> {
  const relay = await cluster.start({ command: 'relay', label: 'R' })
  const relayAddr = relay.ready.addrs[0] ?? ''
  const b = await cluster.start({ listen: ['/p2p-circuit'], extraArgs: ['--relay', relayAddr], label: 'B' })
  const depositor = await startPeer({ relays: [relayAddr] })
  afterCleanup.push(async () => {
    await depositor.stop()
    await removeDir(depositor.dir)
  })
  const whoB = await b.call('whoami', {})
  await depositor.m.addContact(whoB.invite)
  const client = new MailboxClient(depositor.m.libp2p)
  const deposit = async (text: string): Promise<string> => {
    const id = newMessageId()
    const [envelope] = await depositor.m.sealEnvelopes(b.ready.peerId, [{ id, lamport: 1, sentAt: Date.now(), type: 'text', text }])
    assert.ok(envelope !== undefined)
    const [result] = await client.deposit(relay.ready.peerId as PeerIdString, [{ recipient: b.ready.peerId, id, envelope }])
    assert.equal(result?.ok, true)
    return id
  }
  return { b, depositor, deposit }
}

describe('parley relay (spawned processes)', () => {
  it('lets two nodes that listen only on /p2p-circuit exchange messages through it', { timeout: 60_000 }, async () => {
    const metricsPort = await freePort()
    const relay = await cluster.start({ command: 'relay', label: 'R', extraArgs: ['--metrics', `127.0.0.1:${metricsPort}`] })
    const [a, b] = await relayedPair(relay)

    for (const n of [a, b]) {
      assert.ok(n.ready.addrs.length > 0, 'a relayed node reports its circuit address')
      for (const addr of n.ready.addrs) {
        assert.match(addr, new RegExp(`/p2p/${relay.ready.peerId}/p2p-circuit/p2p/${n.ready.peerId}$`), 'only circuit addresses')
      }
      assert.ok(n.ready.invite.includes('p2p-circuit'), 'the invite carries the circuit address')
    }

    await a.call('contact.add', { invite: b.ready.invite })
    const ids: string[] = []
    for (let i = 0; i < 20; i++) ids.push((await a.call('dm.send', { to: b.ready.peerId, text: `relayed ${i}` })).id)
    for (const id of ids) await b.waitFor((l) => l.event === 'message' && l.id === id, 20_000, { description: `message ${id} at B` })
    for (const id of ids) await a.waitFor((l) => l.event === 'status' && l.id === id && l.status === 'delivered', 20_000, { description: `delivered ${id}` })
    const reply = await b.call('dm.send', { to: a.ready.peerId, text: 'and back' })
    await a.waitFor((l) => l.event === 'message' && l.id === reply.id, 20_000, { description: 'reply at A' })
    const history = await b.call('dm.history', { with: a.ready.peerId, limit: 100 })
    assert.deepEqual(history.messages.map((m) => m.text), [...ids.map((_, i) => `relayed ${i}`), 'and back'])

    const health = await httpGet(`http://127.0.0.1:${metricsPort}/health`)
    assert.equal(health.status, 200)
    assert.equal((JSON.parse(health.body) as { status: string }).status, 'ok')
    const metrics = await httpGet(`http://127.0.0.1:${metricsPort}/metrics`)
    assert.equal(metrics.status, 200)
    const reservations = /^parley_relay_reservations (\d+)$/m.exec(metrics.body)
    assert.ok(reservations !== null, metrics.body)
    assert.equal(Number(reservations[1]), 2, 'both nodes hold a reservation')
    assert.match(metrics.body, /^parley_relay_connections \d+$/m)

    await relay.terminate() // SIGTERM: clean exit 0
  })

  it('nodes re-reserve after the relay restarts and stay reachable', { timeout: 90_000 }, async () => {
    const port = await freePort()
    const relay = await cluster.start({ command: 'relay', label: 'R', port })
    const [a, b] = await relayedPair(relay)
    await a.call('contact.add', { invite: b.ready.invite })
    const first = await a.call('dm.send', { to: b.ready.peerId, text: 'before restart' })
    await b.waitFor((l) => l.event === 'message' && l.id === first.id, 20_000, { description: 'first message' })

    await relay.terminate()
    await cluster.restart(relay, { command: 'relay' })
    // Same identity and address: the nodes' relay keepers redial it and reserve again. Wait
    // for B's reservation to be back (its circuit address returns), so what follows tests
    // the circuit, not the mailbox fallback.
    const circuit = `/p2p/${relay.ready.peerId}/p2p-circuit`
    await b.poll(async () => {
      const me = await b.call('whoami', {})
      return me.addrs.some((x) => x.includes(circuit)) ? me : undefined
    }, 60_000, 'B reserved again')
    const second = await a.call('dm.send', { to: b.ready.peerId, text: 'after restart' })
    await b.waitFor((l) => l.event === 'message' && l.id === second.id, 30_000, { description: 'message after relay restart' })
    // Acknowledged by B over the circuit.
    await a.waitFor((l) => l.event === 'status' && l.id === second.id && l.status === 'delivered', 20_000, { description: 'delivered after restart' })
  })

  it('stores and forwards: B offline, A sends 500, R restarts, A quits, B starts and gets all 500 once, in order', { timeout: 120_000 }, async () => {
    const port = await freePort()
    const metricsPort = await freePort()
    const relayArgs = ['--metrics', `127.0.0.1:${metricsPort}`]
    const relay = await cluster.start({ command: 'relay', label: 'R', port, extraArgs: relayArgs })
    const relayAddr = relay.ready.addrs[0] ?? ''
    const nodeOpts = { listen: ['/p2p-circuit'], extraArgs: ['--relay', relayAddr] }
    const a = await cluster.start({ ...nodeOpts, label: 'A' })
    const b = await cluster.start({ ...nodeOpts, label: 'B' })
    await a.call('contact.add', { invite: b.ready.invite })
    await b.stop() // B goes offline (clean exit)

    const ids: string[] = []
    for (let i = 0; i < 500; i++) ids.push((await a.call('dm.send', { to: b.ready.peerId, text: `offline ${i}` })).id)
    // A cannot reach B, so its outbox deposits into B's relay mailbox: status 'sent'.
    const sent = new Set<string>()
    await a.waitFor((l) => {
      if (l.event === 'status' && l.status === 'sent' && typeof l.id === 'string') sent.add(l.id)
      return ids.every((id) => sent.has(id))
    }, 60_000, { description: 'all 500 deposited (status sent)' })
    const held = await httpGet(`http://127.0.0.1:${metricsPort}/metrics`)
    assert.match(held.body, /^parley_mailbox_items 500$/m, 'the relay holds the 500')

    await relay.terminate()
    await cluster.restart(relay, { command: 'relay', extraArgs: relayArgs })
    await a.stop()
    const b2 = await cluster.restart(b, nodeOpts)
    const got = new Map<string, number>()
    await b2.waitFor((l) => {
      if (l.event === 'message' && typeof l.id === 'string') got.set(l.id, (got.get(l.id) ?? 0) + 1)
      return ids.every((id) => got.has(id))
    }, 60_000, { description: 'all 500 at B' })
    await new Promise((resolve) => setTimeout(resolve, 500)) // any duplicate would show up now
    const order = b2.events.filter((l) => l.event === 'message').map((l) => l.id)
    assert.deepEqual(order, ids, 'each exactly once, in send order')
    const history = await b2.call('dm.history', { with: a.ready.peerId, limit: 1000 })
    assert.deepEqual(history.messages.map((m) => m.id), ids)
    let after = ''
    for (let i = 0; i < 50 && !/^parley_mailbox_items 0$/m.test(after); i++) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      after = (await httpGet(`http://127.0.0.1:${metricsPort}/metrics`)).body
    }
    assert.match(after, /^parley_mailbox_items 0$/m, 'gone from the relay')
  })

  it('tells a connected recipient at once that mail is waiting', { timeout: 60_000 }, async () => {
    const { b, depositor, deposit } = await mailboxDepositor()
    const started = Date.now()
    const id = await deposit('waiting for you')
    // B polls only every 30 s; the relay's notice makes it fetch now.
    const got = await b.waitFor((l) => l.event === 'message' && l.id === id, 10_000, { description: 'notified delivery' })
    assert.equal(got.from, depositor.m.peerId)
    assert.ok(Date.now() - started < 10_000)
  })

  it('mail deposited right after the recipient fetched is notified too, not left for its next poll', { timeout: 60_000 }, async () => {
    const { b, deposit } = await mailboxDepositor()
    const first = await deposit('first')
    await b.waitFor((l) => l.event === 'message' && l.id === first, 10_000, { description: 'first delivery' })
    // B has fetched; the relay notified it well under a second ago, so its notice for this
    // deposit is held back. It must still come (when the second is over): B polls only
    // every 30 s.
    const started = Date.now()
    const second = await deposit('second')
    await b.waitFor((l) => l.event === 'message' && l.id === second, 10_000, { description: 'second delivery, notified after the throttle' })
    assert.ok(Date.now() - started < 10_000)
  })

  it('a message delivered through a mailbox turns delivered at the sender (receipt)', { timeout: 90_000 }, async () => {
    const relay = await cluster.start({ command: 'relay', label: 'R' })
    const relayAddr = relay.ready.addrs[0] ?? ''
    const nodeOpts = { listen: ['/p2p-circuit'], extraArgs: ['--relay', relayAddr] }
    const a = await cluster.start({ ...nodeOpts, label: 'A' })
    const b = await cluster.start({ ...nodeOpts, label: 'B' })
    await a.call('contact.add', { invite: b.ready.invite })
    await b.stop()
    const ids: string[] = []
    for (let i = 0; i < 5; i++) ids.push((await a.call('dm.send', { to: b.ready.peerId, text: `later ${i}` })).id)
    const seen = new Map<string, string>()
    const track = (l: Record<string, unknown>): void => { if (l.event === 'status' && typeof l.id === 'string' && typeof l.status === 'string') seen.set(l.id, l.status) }
    await a.waitFor((l) => { track(l); return ids.every((id) => seen.get(id) === 'sent') }, 30_000, { description: 'deposited (sent)' })
    const b2 = await cluster.restart(b, nodeOpts)
    for (const id of ids) await b2.waitFor((l) => l.event === 'message' && l.id === id, 30_000, { description: `message ${id} at B` })
    // B's receipt reaches A (through the relay's directory and the circuit, or A's mailbox).
    await a.waitFor((l) => { track(l); return ids.every((id) => seen.get(id) === 'delivered') }, 60_000, { description: 'delivered at A' })
    const history = await a.call('dm.history', { with: b.ready.peerId, limit: 10 })
    assert.deepEqual(history.messages.map((m) => m.status), ids.map(() => 'delivered'))
    const bHistory = await b2.call('dm.history', { with: a.ready.peerId, limit: 10 })
    assert.deepEqual(bHistory.messages.map((m) => m.id), ids, 'receipts are not shown as messages')
  })
})
