import '../../core/polyfill.js'
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { createNode, type ParleyLibp2p } from '../../core/net/node.js'
import { DM_PROTOCOL } from '../../core/protocols/dm/constants.js'
import { encodeFrames, FrameDecoder } from '../../core/protocols/framing.js'
import { readAck, readSealed, writeEnvelope, writeSealed, type AckFrame } from '../../core/protocols/dm/codec.js'
import { newMessageId } from '../../core/ids.js'
import { eventually, messageEvents, removeDir, sendRaw, startPeer, statusEvents, type TestPeer } from '../helpers/messengers.js'

// Two real Messengers: libp2p over TCP on 127.0.0.1, level databases in temp dirs.
describe('direct messages between two nodes', () => {
  let a: TestPeer
  let b: TestPeer

  before(async () => {
    a = await startPeer({ name: 'Ada' })
    b = await startPeer({ name: 'Bob' })
    await a.m.addContact(b.m.whoami().invite)
    await b.m.addContact(a.m.whoami().invite)
  })

  after(async () => {
    await a.stop()
    await b.stop()
    await removeDir(a.dir)
    await removeDir(b.dir)
  })

  it('delivers 1,000 DMs each way exactly once and in order, and keeps history over restarts', async () => {
    const N = 1000
    const sentByA: string[] = []
    const sentByB: string[] = []
    // Both directions at once, each side's sends issued in order without waiting for delivery.
    const sends: Array<Promise<void>> = []
    for (let i = 0; i < N; i++) {
      sends.push(a.m.sendText(b.m.peerId, `a->b ${i}`).then((v) => { sentByA[i] = v.id }))
      sends.push(b.m.sendText(a.m.peerId, `b->a ${i}`).then((v) => { sentByB[i] = v.id }))
    }
    await Promise.all(sends)

    await eventually(() => messageEvents(b.events).length >= N && messageEvents(a.events).length >= N, 'all messages received')
    await eventually(() => statusEvents(a.events, 'delivered').length >= N && statusEvents(b.events, 'delivered').length >= N, 'all delivered')

    const atB = messageEvents(b.events)
    const atA = messageEvents(a.events)
    assert.equal(atB.length, N, 'B shows each message once')
    assert.equal(atA.length, N, 'A shows each message once')
    assert.deepEqual(atB.map((e) => e.id), sentByA, 'B received in send order')
    assert.deepEqual(atA.map((e) => e.id), sentByB, 'A received in send order')
    assert.deepEqual(atB.map((e) => e.text), sentByA.map((_, i) => `a->b ${i}`))
    assert.equal(new Set(statusEvents(a.events, 'delivered').map((e) => e.id)).size, N)
    assert.equal(a.m.pendingCount(), 0)

    // History: 2N messages per side, ordered by (lamport, sender, id); each side's own in order.
    const check = async (peer: TestPeer, other: TestPeer): Promise<void> => {
      const hist = await peer.m.history(other.m.peerId, 1000)
      const older = await peer.m.history(other.m.peerId, 1000, hist[0]?.id)
      const all = [...older, ...hist]
      assert.equal(all.length, 2 * N)
      assert.equal(new Set(all.map((x) => x.id)).size, 2 * N)
      for (let i = 1; i < all.length; i++) {
        const p = all[i - 1]
        const c = all[i]
        assert.ok(p !== undefined && c !== undefined)
        assert.ok(p.lamport < c.lamport || (p.lamport === c.lamport && (p.from < c.from || (p.from === c.from && p.id < c.id))), 'history sorted')
      }
      const mine = all.filter((x) => x.from === peer.m.peerId)
      assert.ok(mine.every((x) => x.status === 'delivered'), 'own messages delivered')
      const theirs = all.filter((x) => x.from === other.m.peerId)
      assert.deepEqual(theirs.map((x) => x.text), Array.from({ length: N }, (_, i) => `${other === a ? 'a->b' : 'b->a'} ${i}`))
    }
    await check(a, b)
    await check(b, a)

    const idA = a.m.peerId
    const idB = b.m.peerId
    await a.restart()
    await b.restart()
    assert.equal(a.m.peerId, idA, 'same peer id after restart')
    assert.equal(b.m.peerId, idB)
    assert.equal(a.m.listContacts().length, 1)
    await check(a, b)
    await check(b, a)
  })

  it('a message reaches a peer that was unreachable once it comes back', async () => {
    const before = messageEvents(b.events).length
    await b.stop()
    const sent = []
    for (let i = 0; i < 20; i++) sent.push((await a.m.sendText(b.m.peerId, `while away ${i}`)).id)
    await new Promise((resolve) => setTimeout(resolve, 300))
    assert.equal(a.m.pendingCount(b.m.peerId), 20)
    await b.m.start() // restarts on a new port; it greets A, whose outbox then flushes
    await eventually(() => messageEvents(b.events).length >= before + 20, 'messages after return')
    assert.deepEqual(messageEvents(b.events).slice(before).map((e) => e.id), sent)
    await eventually(() => a.m.pendingCount() === 0, 'outbox drained')
  })

  it('carries large messages without overrunning the receiver, and refuses oversize ones', async () => {
    const before = messageEvents(b.events).length
    const big = 'x'.repeat(60 * 1024)
    const ids: string[] = []
    for (let i = 0; i < 100; i++) ids.push((await a.m.sendText(b.m.peerId, `${i} ${big}`)).id)
    await eventually(() => messageEvents(b.events).length >= before + 100, '100 large messages')
    assert.deepEqual(messageEvents(b.events).slice(before).map((e) => e.id), ids)
    await assert.rejects(a.m.sendText(b.m.peerId, 'y'.repeat(64 * 1024 + 1)), { name: 'MessageTooLargeError' })
    await assert.rejects(a.m.sendText(b.m.peerId, ''), { name: 'InvalidRequestError' })
  })

  it('shows a replayed ciphertext once; rejects a tampered one by name and the session keeps working', async () => {
    const id = newMessageId()
    const [frame] = await a.m.sealEnvelopes(b.m.peerId, [{ id, lamport: 1_000_000, sentAt: Date.now(), type: 'text', text: 'replay me' }])
    assert.ok(frame !== undefined)
    // The same ciphertext on two streams: a retry after a lost ack, or a replay by anyone.
    for (let i = 0; i < 2; i++) {
      const ack = await sendRaw(a, b, frame)
      assert.deepEqual(ack.ids, [id], 'acked both times')
    }
    await eventually(async () => (await b.m.history(a.m.peerId, 5)).some((x) => x.id === id), 'stored')
    assert.equal(messageEvents(b.events).filter((e) => e.id === id).length, 1, 'shown once')

    const tamperedId = newMessageId()
    const [genuine] = await a.m.sealEnvelopes(b.m.peerId, [{ id: tamperedId, lamport: 1_000_001, sentAt: Date.now(), type: 'text', text: 'tamper with me' }])
    assert.ok(genuine !== undefined)
    const sealed = readSealed(genuine)
    const flipped = sealed.ciphertext.slice()
    flipped[flipped.byteLength - 5] = (flipped[flipped.byteLength - 5] ?? 0) ^ 0x01
    const ack = await sendRaw(a, b, writeSealed({ ...sealed, ciphertext: flipped }))
    assert.deepEqual(ack.ids, [])
    assert.deepEqual(ack.rejected, [{ id: tamperedId, error: 'DecryptionError' }])
    assert.ok((b.m.rejections.get('DecryptionError') ?? 0) >= 1)
    assert.equal((await b.m.history(a.m.peerId, 1000)).some((x) => x.id === tamperedId), false, 'nothing stored')

    const next = await a.m.sendText(b.m.peerId, 'after the tampering')
    await eventually(() => messageEvents(b.events).some((e) => e.id === next.id), 'next message decrypts')
  })
})

describe('bad input on /parley/dm/2.0.0', () => {
  let b: TestPeer
  let raw: ParleyLibp2p

  before(async () => {
    b = await startPeer()
    raw = await createNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
    await raw.start()
  })

  after(async () => {
    await raw.stop()
    await b.stop()
    await removeDir(b.dir)
  })

  const target = (): ReturnType<typeof multiaddr> => multiaddr(`${b.m.whoami().addrs[0] ?? ''}`)

  /** Write `bytes`, optionally close our end, and report how the stream ended. */
  async function attack (bytes: Uint8Array, closeWrite: boolean): Promise<string> {
    const s = await raw.dialProtocol(target(), DM_PROTOCOL)
    s.send(bytes)
    if (closeWrite) await s.close().catch(() => {})
    try {
      for await (const chunk of s) {
        assert.fail(`unexpected reply of ${chunk.byteLength} bytes`)
      }
      return s.status
    } catch (err) {
      return (err as Error).name
    }
  }

  it('resets the stream on a length prefix claiming 4 GiB, and lives', async () => {
    const prefix = Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x10]) // varint 2^32
    const outcome = await attack(Uint8Array.from([...prefix, 1, 2, 3]), false)
    assert.match(outcome, /Reset|reset|Abort/)
    await eventually(() => (b.m.dmRejections().FrameTooLargeError ?? 0) >= 1, 'FrameTooLargeError recorded')
  })

  it('resets the stream on random bytes', async () => {
    let seed = 42
    const rand = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed & 0xff }
    for (let round = 0; round < 20; round++) {
      const bytes = new Uint8Array(200).map(() => rand())
      await attack(bytes, true)
    }
    const rejected = Object.values(b.m.dmRejections()).reduce((x, y) => x + y, 0)
    assert.ok(rejected >= 20, `every random stream rejected (${JSON.stringify(b.m.dmRejections())})`)
  })

  it('resets the stream on a truncated frame', async () => {
    const frame = writeEnvelope({ id: newMessageId(), lamport: 1, sentAt: Date.now(), type: 'text', text: 'cut short' })
    const whole = encodeFrames([frame])
    await attack(whole.subarray(0, whole.byteLength - 4), true)
    await eventually(() => (b.m.dmRejections().TruncatedFrameError ?? 0) >= 1, 'TruncatedFrameError recorded')
  })

  it('rejects well-formed frames whose ciphertext is garbage, naming the error in the ack', async () => {
    const s = await raw.dialProtocol(target(), DM_PROTOCOL)
    const frames = [
      writeSealed({ id: newMessageId(), kind: 'whisper', ciphertext: new Uint8Array(100).fill(7) }),
      writeSealed({ id: newMessageId(), kind: 'prekey', ciphertext: new Uint8Array(300).fill(9), binding: new Uint8Array(64).fill(1) })
    ]
    s.send(encodeFrames(frames))
    const decoder = new FrameDecoder(64 * 1024)
    let ack: AckFrame | undefined
    for await (const chunk of s) {
      for (const f of decoder.push(chunk)) ack = readAck(f)
      if (ack !== undefined) break
    }
    await s.close().catch(() => {})
    assert.equal(ack?.ids.length, 0)
    assert.equal(ack?.rejected.length, 2)
    for (const r of ack?.rejected ?? []) assert.match(r.error, /^(DecryptionError|NoSessionError|BindingError)$/)
  })

  it('stored nothing from the attacker and still works', async () => {
    const attacker = raw.peerId.toString()
    assert.deepEqual(await b.m.history(attacker, 10), [])
    assert.ok(!b.m.listContacts().some((c) => c.peerId === attacker))
    const c = await startPeer()
    try {
      await c.m.addContact(b.m.whoami().invite)
      const sent = await c.m.sendText(b.m.peerId, 'still alive?')
      await eventually(() => messageEvents(b.events).some((e) => e.id === sent.id), 'honest message after attacks')
    } finally {
      await c.stop()
      await removeDir(c.dir)
    }
  })
})


