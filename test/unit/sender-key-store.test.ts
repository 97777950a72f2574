import '../../core/polyfill.js'
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { groupDecrypt, groupEncrypt, processSenderKeyDistributionMessage, ProtocolAddress, SenderKeyDistributionMessage } from '@signalapp/libsignal-client'
import { SignalState } from '../../core/crypto/signal-state.js'
import { LevelStore } from '../../core/store/level-store.js'
import { removeDir, tempDir } from '../helpers/messengers.js'

// The sender-key store (for groups) with real libsignal group sessions over real LevelStores.
describe('SignalState sender keys', () => {
  it('distributes a sender key, decrypts group messages in order, and keeps working after a reopen', async () => {
    const dir = await tempDir()
    const openStore = async (name: string): Promise<LevelStore> => {
      const s = new LevelStore(join(dir, name))
      await s.open()
      return s
    }
    let aliceStore = await openStore('alice')
    let bobStore = await openStore('bob')
    try {
      const alice = ProtocolAddress.new('alice', 1)
      const distribution = randomUUID()
      const commit = async (state: SignalState, store: LevelStore): Promise<void> => {
        await state.commit(async (changes) => { await store.putCrypto(changes) })
      }
      let a = new SignalState(aliceStore)
      let b = new SignalState(bobStore)
      const skdm = await SenderKeyDistributionMessage.create(alice, distribution, a.senderKeys)
      await commit(a, aliceStore)
      await processSenderKeyDistributionMessage(alice, SenderKeyDistributionMessage.deserialize(skdm.serialize()), b.senderKeys)
      await commit(b, bobStore)

      const text = (i: number): Uint8Array<ArrayBuffer> => new TextEncoder().encode(`group message ${i}`)
      for (let i = 0; i < 20; i++) {
        const ct = await groupEncrypt(alice, distribution, a.senderKeys, text(i))
        await commit(a, aliceStore)
        const plain = await groupDecrypt(alice, b.senderKeys, ct.serialize())
        await commit(b, bobStore)
        assert.deepEqual(plain, text(i))
      }

      // Both sides restart: the chains continue from disk.
      await aliceStore.close()
      await bobStore.close()
      aliceStore = await openStore('alice')
      bobStore = await openStore('bob')
      a = new SignalState(aliceStore)
      b = new SignalState(bobStore)
      const ct = await groupEncrypt(alice, distribution, a.senderKeys, text(20))
      await commit(a, aliceStore)
      assert.deepEqual(await groupDecrypt(alice, b.senderKeys, ct.serialize()), text(20))
      // A sender key that was never distributed cannot be read.
      await assert.rejects(groupDecrypt(ProtocolAddress.new('mallory', 1), b.senderKeys, ct.serialize()))
    } finally {
      await aliceStore.close().catch(() => {})
      await bobStore.close().catch(() => {})
      await removeDir(dir)
    }
  })
})
