import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import type { PeerIdString } from '../../core/ids.js'
import { newMessageId } from '../../core/ids.js'
import { LevelStore, type LevelStoreOptions } from '../../core/store/level-store.js'
import type { MessageRecord } from '../../core/store/types.js'
import { runStoreSuite } from './store-suite.js'

async function tempDir (): Promise<string> {
  return await mkdtemp(join(tmpdir(), 'parley-level-store-'))
}

async function levelFixture (options: LevelStoreOptions = {}): Promise<{ store: LevelStore, reopen: () => Promise<LevelStore>, cleanup: () => Promise<void> }> {
  const dir = await tempDir()
  const location = join(dir, 'db')
  let current = new LevelStore(location, options)
  await current.open()
  return {
    store: current,
    reopen: async () => {
      await current.close()
      current = new LevelStore(location, options)
      await current.open()
      return current
    },
    cleanup: async () => {
      await current.close()
      await rm(dir, { recursive: true, force: true })
    }
  }
}

runStoreSuite('LevelStore', async () => await levelFixture())

describe('LevelStore', () => {
  it('gathers journaled writes before applying them to level: reads still see every write at once, and the last value of each key survives', async () => {
    const f = await levelFixture()
    try {
      let store = f.store
      const value = (i: number): Uint8Array => new Uint8Array([i & 0xff, i >> 8])
      for (let i = 0; i < 1000; i++) {
        await store.putCrypto(new Map([['session:x', value(i)]]))
        if (i % 97 === 0) assert.deepEqual(await store.getCrypto('session:x'), value(i), 'a read right after a write sees it')
      }
      await store.putCrypto(new Map([['gone', value(1)]]))
      await store.putCrypto(new Map<string, Uint8Array | null>([['gone', null], ['kept', value(2)]]))
      await store.putCrypto(new Map<string, Uint8Array | null>([['kept', null]]))
      await store.putCrypto(new Map([['kept', value(3)]]))
      assert.deepEqual(await store.listCrypto(''), [{ key: 'kept', value: value(3) }, { key: 'session:x', value: value(999) }])
      store = await f.reopen()
      assert.deepEqual(await store.listCrypto(''), [{ key: 'kept', value: value(3) }, { key: 'session:x', value: value(999) }])
    } finally {
      await f.cleanup()
    }
  })

  it('a group-area write that fails to reach the journal leaves neither its entries nor its crypto changes, and the store keeps working', async () => {
    const f = await levelFixture()
    try {
      const store = f.store
      await store.putGroupEntries(new Map([['g/r/1', new Uint8Array([1])]]), new Map([['senderkey:a', new Uint8Array([1])]]))
      // The journal append is the write's commit point: make it fail as a full disk would.
      const journal = (store as unknown as { journal: { append: (ops: unknown) => void } }).journal
      const append = journal.append
      journal.append = () => { throw new Error('ENOSPC: no space left on device') }
      await assert.rejects(store.putGroupEntries(
        new Map<string, Uint8Array | null>([['g/r/2', new Uint8Array([2])], ['g/r/1', null]]),
        new Map([['senderkey:a', new Uint8Array([2])]])
      ), /ENOSPC/)
      journal.append = append
      assert.deepEqual(await store.listGroupEntries('g/'), [{ key: 'g/r/1', value: new Uint8Array([1]) }])
      assert.deepEqual(await store.getCrypto('senderkey:a'), new Uint8Array([1]))
      await store.putGroupEntries(new Map([['g/r/3', new Uint8Array([3])]]))
      const reopened = await f.reopen()
      assert.deepEqual((await reopened.listGroupEntries('g/')).map((e) => e.key), ['g/r/1', 'g/r/3'])
      assert.deepEqual(await reopened.getCrypto('senderkey:a'), new Uint8Array([1]))
    } finally {
      await f.cleanup()
    }
  })

  it('refuses to open a data directory another store holds open, with DataDirLockedError', async () => {
    const dir = await tempDir()
    const location = join(dir, 'db')
    const first = new LevelStore(location)
    await first.open()
    try {
      const second = new LevelStore(location)
      await assert.rejects(second.open(), (err: unknown) => {
        assert.ok(err instanceof Error)
        assert.equal(err.name, 'DataDirLockedError')
        return true
      })
      await first.putSetting('still', 'usable')
      assert.equal(await first.getSetting('still'), 'usable')
    } finally {
      await first.close()
    }
    // The lock goes with the holder: once closed, the directory opens again with its data.
    const third = new LevelStore(location)
    await third.open()
    try {
      assert.equal(await third.getSetting('still'), 'usable')
    } finally {
      await third.close()
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('with sync: true, writes persist across a reopen', async () => {
    const fixture = await levelFixture({ sync: true })
    try {
      const peer = 'QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N' as PeerIdString
      const m: MessageRecord = {
        id: newMessageId(), conversation: peer, from: peer, direction: 'in', text: 'synced', lamport: 3, sentAt: 1, receivedAt: 2, status: 'received'
      }
      await Promise.all([fixture.store.saveIncoming([m], 3), fixture.store.putSetting('a', 'b')])
      const reopened = await fixture.reopen()
      assert.deepEqual(await reopened.getMessage(m.id), m)
      assert.equal(await reopened.getSetting('a'), 'b')
      assert.equal(await reopened.getClock(), 3)
    } finally {
      await fixture.cleanup()
    }
  })
})
