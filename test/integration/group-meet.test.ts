import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { eventually, removeDir, startPeer, type TestPeer } from '../helpers/messengers.js'
import { startRelay, type TestRelay } from '../helpers/relay.js'

// Real Messengers (libp2p on 127.0.0.1, level in temp dirs) and a real relay in this process.
// A member that cannot be reached is dialled again less and less often, not every 5 s: on a
// loaded machine such dials time out, and their load made the rest fail too.

/** Start times of dial attempts (dials less than a second apart are one attempt: direct, then through the relay). */
function attempts (dials: number[]): number[] {
  return dials.filter((t, i) => i === 0 || t - (dials[i - 1] as number) > 1_000)
}

describe('meeting group members', () => {
  let relay: TestRelay
  before(async () => { relay = await startRelay() })
  after(async () => { await relay.stop() })

  it('an unreachable member is dialled with growing gaps, and reached again as soon as it is back', { timeout: 120_000 }, async () => {
    const dialsToB: number[] = []
    let bId = ''
    const a = await startPeer({
      relays: [relay.addr],
      connectionGater: { denyDialPeer: (peer: PeerId) => { if (peer.toString() === bId) dialsToB.push(Date.now()); return false } }
    })
    const b = await startPeer({ relays: [relay.addr] })
    bId = b.m.peerId
    const peers: TestPeer[] = [a, b]
    try {
      await a.m.addContact(b.m.whoami().invite)
      const group = await a.m.groups.create('meet', [b.m.peerId])
      await eventually(() => b.events.some((e) => e.event === 'group.invite'), 'B invited')
      await b.m.groups.accept(group)
      await a.m.groups.send(group, 'hello')
      await eventually(() => b.m.groups.history(group, 10).length === 1, 'B has the message')
      await eventually(() => a.m.pendingCount(b.m.peerId) === 0, 'nothing left for B in A\'s outbox')

      await b.stop()
      const stoppedAt = Date.now()
      dialsToB.length = 0
      await new Promise((resolve) => setTimeout(resolve, 45_000))
      const tries = attempts(dialsToB.filter((t) => t >= stoppedAt))
      const gaps = tries.slice(1).map((t, i) => t - (tries[i] as number))
      // Every 5 s would be 9 attempts in 45 s, each gap about 5 s.
      assert.ok(tries.length >= 2, `A kept trying (${tries.length} attempts)`)
      assert.ok(tries.length <= 6, `A backed off: ${tries.length} attempts in 45 s, gaps ${gaps.join(', ')} ms`)
      assert.ok(Math.max(...gaps) >= 9_000, `the gaps grew: ${gaps.join(', ')} ms`)

      // B comes back: it dials A itself, and the group works again at once.
      await b.restart()
      await eventually(() => a.m.libp2p.getConnections(peerIdFromString(b.m.peerId)).length > 0, 'A and B connected again', 15_000)
      await a.m.groups.send(group, 'welcome back')
      await eventually(() => b.m.groups.history(group, 10).length === 2, 'B has the new message', 15_000)
    } finally {
      await Promise.allSettled(peers.map(async (p) => { await p.stop() }))
      await Promise.allSettled(peers.map(async (p) => { await removeDir(p.dir) }))
    }
  })
})
