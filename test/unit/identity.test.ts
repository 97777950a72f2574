import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, it } from 'node:test'
import { privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { IDENTITY_FILE, ensurePrivateDir, loadOrCreateIdentity, peerIdString, type IdentityOptions } from '../../core/identity/identity.js'
import { decodeSealed, encodeSealed } from '../../core/identity/key-protector.js'
import { parsePeerId } from '../../core/identity/invite.js'
import { fakeProtector } from '../helpers/key-protectors.js'

const isPosix = process.platform !== 'win32'

async function modeOf (path: string): Promise<number> {
  return (await stat(path)).mode & 0o777
}

async function assertCorrupt (dataDir: string, options: IdentityOptions = {}): Promise<void> {
  await assert.rejects(loadOrCreateIdentity(dataDir, options), (err: unknown) => {
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

/**
 * A stand-in for Electron's safeStorage (no Electron here, and core must not know it): XOR
 * with a secret plus a check byte, so a wrong secret is detected the way a keychain refuses.
 */
async function assertSealed (dataDir: string, options: IdentityOptions, pattern: RegExp): Promise<void> {
  await assert.rejects(loadOrCreateIdentity(dataDir, options), (err: unknown) => {
    assert.ok(err instanceof Error)
    assert.equal(err.name, 'SealedKeyError', err.message)
    assert.match(err.message, pattern)
    return true
  })
}

describe('identity sealed by a KeyProtector', () => {
  let root: string

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'parley-identity-sealed-'))
  })

  afterEach(async () => {
    await rm(root, { recursive: true, force: true })
  })

  it('writes a new key sealed (no plain key bytes on disk) and opens it on every later load', async () => {
    const dataDir = join(root, 'data')
    const protector = fakeProtector(0x5a)
    const first = await loadOrCreateIdentity(dataDir, { protector })
    const file = join(dataDir, IDENTITY_FILE)
    const onDisk = await readFile(file)
    assert.ok(onDisk.subarray(0, 14).equals(Buffer.from('PARLEY-SEALED\x01')), 'sealed files are marked')
    assert.equal(decodeSealed(onDisk)?.protector, 'fake-keychain')
    const plain = privateKeyToProtobuf(first)
    assert.equal(onDisk.indexOf(Buffer.from(plain.subarray(4, 36))), -1, 'the private key bytes are not on disk')
    if (isPosix) assert.equal((await modeOf(file)).toString(8), '600')
    assert.deepEqual(await readdir(dataDir), [IDENTITY_FILE])

    const second = await loadOrCreateIdentity(dataDir, { protector })
    assert.ok(second.equals(first))
    assert.equal(protector.seals, 1)
    assert.equal(protector.opens, 1)
    assert.deepEqual(await readFile(file), onDisk, 'loading does not rewrite a sealed key')
  })

  it('seals a plain key file it finds (the desktop app adopting a data dir), keeping the peer id', async () => {
    const dataDir = join(root, 'data')
    const plainKey = await loadOrCreateIdentity(dataDir)
    const protector = fakeProtector(0x33)
    const adopted = await loadOrCreateIdentity(dataDir, { protector })
    assert.equal(peerIdString(adopted), peerIdString(plainKey))
    assert.ok(decodeSealed(await readFile(join(dataDir, IDENTITY_FILE))) !== undefined, 'now sealed')
    assert.equal(peerIdString(await loadOrCreateIdentity(dataDir, { protector })), peerIdString(plainKey))
  })

  it('refuses a sealed key without its protector, with another protector, or when the protector cannot open it, leaving the file alone', async () => {
    const dataDir = join(root, 'data')
    const protector = fakeProtector(0x77)
    const key = await loadOrCreateIdentity(dataDir, { protector })
    const file = join(dataDir, IDENTITY_FILE)
    const sealed = await readFile(file)

    await assertSealed(dataDir, {}, /sealed by "fake-keychain".*desktop app/)
    await assertSealed(dataDir, { protector: fakeProtector(0x77, 'other-keychain') }, /not "other-keychain"/)
    await assertSealed(dataDir, { protector: fakeProtector(0x78) }, /cannot be opened.*wrong key/)
    assert.deepEqual(await readFile(file), sealed, 'a refused key is never replaced')
    assert.ok((await loadOrCreateIdentity(dataDir, { protector })).equals(key))
  })

  it('refuses a damaged sealed file: truncated header with SealedKeyError, bad contents with CorruptRecordError', async () => {
    const dataDir = join(root, 'data')
    const protector = fakeProtector(0x11)
    await loadOrCreateIdentity(dataDir, { protector })
    const file = join(dataDir, IDENTITY_FILE)
    const sealed = await readFile(file)

    await writeFile(file, sealed.subarray(0, 17))
    await assertSealed(dataDir, { protector }, /truncated/)
    await writeFile(file, encodeSealed('fake-keychain', await protector.seal(new TextEncoder().encode('not a key'))))
    await assertCorrupt(dataDir, { protector })
  })

  it('refuses protector names that are empty, too long or not printable ASCII', () => {
    for (const name of ['', 'x'.repeat(65), 'has space', 'ünï']) {
      assert.throws(() => encodeSealed(name, new Uint8Array(1)), { name: 'SealedKeyError' })
    }
    assert.equal(decodeSealed(encodeSealed('x'.repeat(64), new Uint8Array([1, 2])))?.protector, 'x'.repeat(64))
  })
})
