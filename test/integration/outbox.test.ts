import '../../core/polyfill.js'
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { newMessageId, type MessageId, type PeerIdString } from '../../core/ids.js'
import { createNode, type ParleyLibp2p } from '../../core/net/node.js'
import { readEnvelope, writeEnvelope, writeSealed, type Rejection, type SealedFrame } from '../../core/protocols/dm/codec.js'
import { DmProtocol } from '../../core/protocols/dm/dm-protocol.js'
import { MAX_REJECTIONS, Outbox, type OutboxHooks } from '../../core/outbox/outbox.js'
import type { OutboxRecord } from '../../core/store/types.js'
import { eventually } from '../helpers/messengers.js'

/** A "held" error: the queue must wait for kick (as an identity change does). */
class HoldError extends Error {
  override name = 'HoldError'
}

// The outbox over a real /parley/dm stream between two libp2p nodes on 127.0.0.1. The
// receiver's sink decides per frame (store, or reject by name); the seal hook stands for
// encryption (it wraps each envelope in a Sealed frame and counts the attempts).
describe('outbox: sealing at send time, rejections, holds', () => {
  let a: ParleyLibp2p
  let b: ParleyLibp2p
  let dmB: DmProtocol
  let dmA: DmProtocol
  let bPeer: PeerIdString
  /** What B does with each frame it gets; default: store it. */
  let verdict: (frame: SealedFrame) => string | undefined = () => undefined
  const stored: MessageId[] = []

  before(async () => {
    a = await createNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
    b = await createNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
    dmA = new DmProtocol(a, async () => [])
    dmB = new DmProtocol(b, async (_from, frames) => {
      const rejected: Rejection[] = []
      for (const f of frames) {
        const error = verdict(f)
        if (error === undefined) stored.push(readEnvelope(f.ciphertext).id)
        else rejected.push({ id: f.id, error })
      }
      return rejected
    })
    await dmA.start()
    await dmB.start()
    await a.start()
    await b.start()
    bPeer = b.peerId.toString() as PeerIdString
    await a.peerStore.merge(b.peerId, { multiaddrs: b.getMultiaddrs() })
  })

  after(async () => {
    await dmA.stop()
    await dmB.stop()
    await a.stop()
    await b.stop()
  })

  function record (text: string): OutboxRecord {
    const id = newMessageId()
    const now = Date.now()
    return { id, to: bPeer, frame: writeEnvelope({ id, lamport: 1, sentAt: now, type: 'text', text }), createdAt: now, expiresAt: now + 60_000 }
  }

  function outbox (log: { sealed?: MessageId[], failed?: MessageId[], rejectedCalls?: Rejection[][] }, overrides: Partial<OutboxHooks> = {}): Outbox {
    const hooks: OutboxHooks = {
      open: async (peer, signal) => await dmA.open(peer, { signal }),
      sent: () => {},
      delivered: async () => {},
      failed: async (_peer, ids) => { log.failed?.push(...ids) },
      seal: async (_peer, records) => {
        log.sealed?.push(...records.map((r) => r.id))
        return records.map((r) => writeSealed({ id: r.id, kind: 'whisper', ciphertext: r.frame }))
      },
      rejected: async (_peer, rejected) => { log.rejectedCalls?.push(rejected) },
      holds: (err) => err instanceof HoldError,
      ...overrides
    }
    return new Outbox(hooks, { initialBackoffMs: 20, maxBackoffMs: 100 })
  }

  it('seals every attempt afresh and, after a rejection, resends (the rejected hook runs first)', async () => {
    const sealed: MessageId[] = []
    const rejectedCalls: Rejection[][] = []
    const rec = record('rejected once')
    let first = true
    verdict = (f) => {
      if (f.id !== rec.id || !first) return undefined
      first = false
      return 'DecryptionError'
    }
    const o = outbox({ sealed, rejectedCalls })
    o.enqueue(rec)
    await eventually(() => stored.includes(rec.id), 'stored on the second try')
    assert.deepEqual(rejectedCalls, [[{ id: rec.id, error: 'DecryptionError' }]])
    assert.equal(sealed.filter((id) => id === rec.id).length, 2, 'sealed once per attempt')
    await eventually(() => o.pending() === 0, 'acked')
    await o.stop()
  })

  it(`gives an entry up (failed) after ${MAX_REJECTIONS} rejections, and the next one still goes`, async () => {
    const failed: MessageId[] = []
    const doomed = record('never taken')
    const fine = record('taken')
    verdict = (f) => f.id === doomed.id ? 'NoSessionError' : undefined
    const o = outbox({ failed })
    o.enqueue(doomed)
    o.enqueue(fine)
    await eventually(() => failed.includes(doomed.id), 'given up')
    await eventually(() => stored.includes(fine.id), 'the next entry delivered')
    assert.equal(stored.includes(doomed.id), false)
    await eventually(() => o.pending() === 0, 'queue empty')
    await o.stop()
  })

  it('holds a queue on a "hold" error from seal until kicked, then sends in order', async () => {
    verdict = () => undefined
    let holding = true
    const sealed: MessageId[] = []
    const o = outbox({}, {
      seal: async (_peer, records) => {
        if (holding) throw new HoldError('waiting for the user')
        sealed.push(...records.map((r) => r.id))
        return records.map((r) => writeSealed({ id: r.id, kind: 'whisper', ciphertext: r.frame }))
      }
    })
    const recs = [record('held 1'), record('held 2'), record('held 3')]
    for (const r of recs) o.enqueue(r)
    await new Promise((resolve) => setTimeout(resolve, 500)) // several backoff periods
    assert.equal(o.pending(bPeer), 3, 'all still queued')
    assert.deepEqual(sealed, [], 'nothing sealed, nothing sent')
    assert.equal(recs.some((r) => stored.includes(r.id)), false)
    holding = false
    o.kick(bPeer)
    await eventually(() => recs.every((r) => stored.includes(r.id)), 'sent after the kick')
    const order = stored.filter((id) => recs.some((r) => r.id === id))
    assert.deepEqual(order, recs.map((r) => r.id))
    await o.stop()
  })
})
