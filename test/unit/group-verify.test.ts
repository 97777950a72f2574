import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { newGroupId, newMessageId, type PeerIdString } from '../../core/ids.js'
import { GroupDoc } from '../../core/groups/doc.js'
import { POOL_MIN_RECORDS, recordHash, signRecordNow, verifyRecord, verifyRecords, type GroupRecord } from '../../core/groups/record.js'
import { VERIFY_BAD, VERIFY_OK, VerifyPool, type VerifyItem } from '../../core/groups/verify-pool.js'

const group = newGroupId()

async function identity (): Promise<{ key: Awaited<ReturnType<typeof generateKeyPair>>, peer: PeerIdString }> {
  const key = await generateKeyPair('Ed25519')
  return { key, peer: peerIdFromPrivateKey(key).toString() as PeerIdString }
}

/** What verifyRecord says about a record: undefined, or the thrown error's name and message. */
async function single (r: GroupRecord): Promise<{ name: string, message: string } | undefined> {
  try {
    await verifyRecord(r)
    return undefined
  } catch (err) {
    return { name: (err as Error).name, message: (err as Error).message }
  }
}

/** A pool whose every job fails, as when its worker dies. */
class DeadPool extends VerifyPool {
  override async verify (): Promise<Uint8Array<ArrayBuffer>> {
    throw new Error('worker died')
  }
}

/** A pool that answers with no statuses at all (a broken answer must not count as good). */
class MutePool extends VerifyPool {
  override async verify (): Promise<Uint8Array<ArrayBuffer>> {
    return new Uint8Array(0)
  }
}

describe('group record verification in batches (verify workers)', async () => {
  const alice = await identity()
  const mallory = await identity()
  const pool = new VerifyPool(2)
  after(async () => { await pool.close() })

  /** 3 x POOL_MIN_RECORDS records: mostly good, with forged ones spread over every slice. */
  function batch (): GroupRecord[] {
    const out: GroupRecord[] = []
    for (let i = 0; i < 3 * POOL_MIN_RECORDS; i++) {
      const update = new Uint8Array([1, 1, 5, i & 0x7f, 0, 0])
      const r = signRecordNow(alice.key, group, update)
      if (i % 17 === 3) out.push({ ...r, signature: signRecordNow(mallory.key, group, update).signature }) // someone else signed
      else if (i % 17 === 9) out.push({ ...r, update: new Uint8Array([...update, 1]) }) // changed after signing
      else if (i % 17 === 12) out.push({ ...r, group: newGroupId() }) // moved to another group
      else if (i % 17 === 15) out.push({ ...r, signature: new Uint8Array(64) }) // zeros
      else out.push(r)
    }
    return out
  }

  async function assertSameAsSingle (records: GroupRecord[], workers: VerifyPool, atLeast = 4 * Math.floor(records.length / 17)): Promise<void> {
    const errors = await verifyRecords(records, workers)
    assert.equal(errors.length, records.length)
    let refused = 0
    for (let i = 0; i < records.length; i++) {
      const want = await single(records[i] as GroupRecord)
      const got = errors[i]
      assert.deepEqual(got === undefined ? undefined : { name: got.name, message: got.message }, want, `record ${i}`)
      if (want !== undefined) refused++
    }
    assert.ok(refused >= atLeast, 'the forged records were all refused')
  }

  it('a batch verified partly on workers gives exactly verifyRecord\'s answer for every record', async () => {
    await assertSameAsSingle(batch(), pool)
  })

  it('small batches stay on the calling thread and answer the same', async () => {
    await assertSameAsSingle(batch().slice(0, POOL_MIN_RECORDS - 1), pool)
  })

  it('workers that fail or answer nothing let nothing through: the records are verified on the calling thread', async () => {
    await assertSameAsSingle(batch(), new DeadPool(2))
    await assertSameAsSingle(batch(), new MutePool(1))
  })

  it('a worker tells a good signature from a bad one', async () => {
    const r = signRecordNow(alice.key, group, new Uint8Array([1, 1, 5, 0, 0, 0]))
    const message = new Uint8Array(0)
    // The pool sees only keys, messages and signatures: sign a bare message with node to get one.
    const { createPrivateKey, sign } = await import('node:crypto')
    const raw = alice.key.raw
    const priv = createPrivateKey({ format: 'jwk', key: { kty: 'OKP', crv: 'Ed25519', d: Buffer.from(raw.subarray(0, 32)).toString('base64url'), x: Buffer.from(alice.key.publicKey.raw).toString('base64url') } })
    const good: VerifyItem = { key: alice.key.publicKey.raw, message, signature: new Uint8Array(sign(null, message, priv)) }
    const bad: VerifyItem = { ...good, signature: r.signature }
    const other: VerifyItem = { ...good, key: mallory.key.publicKey.raw }
    assert.deepEqual([...await pool.verify([good, bad, other])], [VERIFY_OK, VERIFY_BAD, VERIFY_BAD])
  })

  it('GroupDoc.applyMany refuses a forged record in a large catch-up batch and applies the rest', async () => {
    const bob = await identity()
    const { doc: writer, record: creation } = await GroupDoc.create({ group, self: alice.peer, privateKey: alice.key, name: 'batch', members: [bob.peer] })
    const records: GroupRecord[] = [creation]
    for (let i = 0; i < 2 * POOL_MIN_RECORDS; i++) records.push(await writer.addMessage({ id: newMessageId(), text: `m${i}`, sentAt: 1, lamport: i + 1 }))
    const forged = records.length - 5
    const original = records[forged] as GroupRecord
    records[forged] = { ...original, signature: signRecordNow(mallory.key, group, original.update).signature }
    const reader = GroupDoc.open({ group, self: bob.peer, privateKey: bob.key, records: [] })
    const result = await reader.applyMany(records)
    assert.equal(result.applied, forged)
    assert.equal(result.refused.filter((r) => r.error.name === 'GroupSignatureError').length, 1)
    assert.equal(reader.messageCount, forged - 1)
    assert.equal(reader.message(writer.messages()[forged - 1]?.id ?? ''), undefined)
  })

  /** `n` records of `who`, each naming the one before as prev, as GroupDoc writes them. */
  function chain (who: { key: Awaited<ReturnType<typeof generateKeyPair>> }, n: number, first?: GroupRecord): GroupRecord[] {
    const out: GroupRecord[] = []
    for (let i = 0; i < n; i++) {
      const prev = out.at(-1) ?? first
      out.push(signRecordNow(who.key, group, new Uint8Array([1, 1, 7, i & 0x7f, i >> 7, 0]), prev === undefined ? undefined : recordHash(prev)))
    }
    return out
  }

  it('a chained batch is vouched for by its newest record: the ones it chains back to need no signature check', async () => {
    // Only a broken client makes this: its own record signed wrongly, then chained to.
    const wrong = { ...signRecordNow(alice.key, group, new Uint8Array([1, 1, 7, 0, 0, 1])), signature: new Uint8Array(64).fill(3) }
    const records = [wrong, ...chain(alice, 3 * POOL_MIN_RECORDS, wrong)]
    assert.equal((await single(wrong))?.name, 'GroupSignatureError')
    for (const workers of [pool, new DeadPool(1)]) {
      assert.deepEqual(await verifyRecords(records, workers), records.map(() => undefined))
      // Without the record that names it, it stands alone and is refused.
      assert.equal((await verifyRecords([wrong, ...records.slice(2)], workers))[0]?.name, 'GroupSignatureError')
    }
  })

  it('a chain tampered with anywhere: every record gets exactly verifyRecord\'s answer', async () => {
    const records = chain(alice, 3 * POOL_MIN_RECORDS)
    const mine = chain(mallory, 20)
    for (let i = 5; i < records.length; i += 17) {
      const r = records[i] as GroupRecord
      if (i % 4 === 1) records[i] = { ...r, update: new Uint8Array([...r.update, 1]) } // changed after signing
      else if (i % 4 === 2) records[i] = { ...r, signature: signRecordNow(mallory.key, group, r.update, r.prev).signature } // someone else signed
      else if (i % 4 === 3) records[i] = { ...r, signature: new Uint8Array(64) } // zeros
      else records[i] = { ...r, prev: recordHash(records[i - 3] as GroupRecord) } // another prev under the same signature
    }
    // Mallory's own chain, and a record of hers that claims to be alice's next one.
    records.push(...mine, { ...signRecordNow(mallory.key, group, new Uint8Array([1, 1, 9, 0, 0, 0]), recordHash(records.at(-1) as GroupRecord)), author: alice.peer })
    for (const workers of [pool, new DeadPool(2)]) await assertSameAsSingle(records, workers, 8)
  })

  it('a good record of another author vouches for nothing of alice\'s', async () => {
    const wrong = { ...signRecordNow(alice.key, group, new Uint8Array([1, 1, 7, 0, 0, 2])), signature: new Uint8Array(64).fill(5) }
    const hers = signRecordNow(mallory.key, group, new Uint8Array([1, 1, 8, 0, 0, 0]), recordHash(wrong))
    const errors = await verifyRecords([wrong, hers], pool)
    assert.equal(errors[0]?.name, 'GroupSignatureError')
    assert.equal(errors[1], undefined)
  })

  it('started or busy workers never keep a process alive', async () => {
    const record = JSON.stringify(fileURLToPath(new URL('../../core/groups/record.js', import.meta.url)))
    const dir = await mkdtemp(join(tmpdir(), 'parley-verify-'))
    after(async () => { await rm(dir, { recursive: true, force: true }) })
    let n = 0
    // A script file, not -e: the hang this guards against showed with a file.
    const run = async (script: string): Promise<void> => {
      const file = join(dir, `s${n++}.mjs`)
      await writeFile(file, script)
      await new Promise<void>((resolve, reject) => {
        execFile(process.execPath, [file], { timeout: 20_000, cwd: fileURLToPath(new URL('.', import.meta.url)) }, (err) => {
          if (err !== null) reject(new Error(`the process did not exit cleanly: ${err.message}`, { cause: err }))
          else resolve()
        })
      })
    }
    // Started and idle (as GroupManager.open leaves them).
    await run(`const m = await import(${record}); m.warmVerifiers(); console.log('started')`)
    // After a batch.
    await run(`const m = await import(${record});` +
      `const { generateKeyPair } = await import(${JSON.stringify(import.meta.resolve('@libp2p/crypto/keys'))}); const key = await generateKeyPair('Ed25519');` +
      `const rs = Array.from({ length: ${2 * POOL_MIN_RECORDS} }, (_, i) => m.signRecordNow(key, ${JSON.stringify(group)}, new Uint8Array([1, 1, 5, i & 0x7f, 0, 0])));` +
      'const errors = await m.verifyRecords(rs); if (errors.some((e) => e !== undefined)) process.exit(3)')
  })
})
