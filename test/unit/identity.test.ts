import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, it } from 'node:test'
import { IDENTITY_FILE, ensurePrivateDir, loadOrCreateIdentity, peerIdString } from '../../core/identity/identity.js'
import { parsePeerId } from '../../core/identity/invite.js'

const isPosix = process.platform !== 'win32'

async function modeOf (path: string): Promise<number> {
  return (await stat(path)).mode & 0o777
}

async function assertCorrupt (dataDir: string): Promise<void> {
  await assert.rejects(loadOrCreateIdentity(dataDir), (err: unknown) => {
    assert.ok(err instanceof Error)
    assert.equal(err.name, 'CorruptRecordError', err.message)
    return true
  })
}

describe('identity', () => {
  let root: string

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'parley-identity-'))
  })

  afterEach(async () => {
    await rm(root, { recursive: true, force: true })
  })

  it('creates a key once and returns the same peer id on every later load', async () => {
    const dataDir = join(root, 'data')
    const first = await loadOrCreateIdentity(dataDir)
    const bytes = await readFile(join(dataDir, IDENTITY_FILE))
    const second = await loadOrCreateIdentity(dataDir)
    const third = await loadOrCreateIdentity(dataDir)
    assert.equal(peerIdString(second), peerIdString(first))
    assert.equal(peerIdString(third), peerIdString(first))
    assert.equal(first.type, 'Ed25519')
    assert.ok(second.equals(first))
    assert.deepEqual(await readFile(join(dataDir, IDENTITY_FILE)), bytes, 'loading does not rewrite the key')
    assert.equal(parsePeerId(peerIdString(first)), peerIdString(first))
    assert.match(peerIdString(first), /^12D3KooW/)
  })

  it('gives different data dirs different identities', async () => {
    const a = await loadOrCreateIdentity(join(root, 'a'))
    const b = await loadOrCreateIdentity(join(root, 'b'))
    assert.notEqual(peerIdString(a), peerIdString(b))
  })

  it('makes nested data dirs, leaves only the key file behind', async () => {
    const dataDir = join(root, 'x', 'y', 'z')
    await loadOrCreateIdentity(dataDir)
    assert.deepEqual(await readdir(dataDir), [IDENTITY_FILE])
  })

  it('keeps the data dir at 0700 and identity.key at 0600', { skip: !isPosix && 'POSIX modes only' }, async () => {
    const dataDir = join(root, 'data')
    await loadOrCreateIdentity(dataDir)
    assert.equal((await modeOf(dataDir)).toString(8), '700')
    assert.equal((await modeOf(join(dataDir, IDENTITY_FILE))).toString(8), '600')
  })

  it('tightens a pre-existing world-readable data dir to 0700', { skip: !isPosix && 'POSIX modes only' }, async () => {
    const dataDir = join(root, 'open')
    await mkdir(dataDir, { mode: 0o755 })
    await chmod(dataDir, 0o755)
    await loadOrCreateIdentity(dataDir)
    assert.equal((await modeOf(dataDir)).toString(8), '700')
    assert.equal((await modeOf(join(dataDir, IDENTITY_FILE))).toString(8), '600')

    const other = join(root, 'other')
    await mkdir(other, { mode: 0o777 })
    await chmod(other, 0o777)
    await ensurePrivateDir(other)
    assert.equal((await modeOf(other)).toString(8), '700')
  })

  it('refuses a corrupt key file with CorruptRecordError and leaves it in place', async () => {
    const dataDir = join(root, 'data')
    const original = await loadOrCreateIdentity(dataDir)
    const file = join(dataDir, IDENTITY_FILE)
    const good = await readFile(file)

    const corruptions: Uint8Array[] = [
      new TextEncoder().encode('this is not a protobuf key'),
      good.subarray(0, good.byteLength - 10), // truncated
      new Uint8Array([0x08, 0x09, 0x12, 0x00]), // unknown key type, empty data
      new Uint8Array([0xff, 0xff, 0xff, 0xff])
    ]
    for (const bytes of corruptions) {
      await writeFile(file, bytes)
      await assertCorrupt(dataDir)
      // Never silently replaced: the user's identity is not thrown away.
      assert.deepEqual(new Uint8Array(await readFile(file)), new Uint8Array(bytes))
    }

    await writeFile(file, good)
    assert.equal(peerIdString(await loadOrCreateIdentity(dataDir)), peerIdString(original))
  })
})
