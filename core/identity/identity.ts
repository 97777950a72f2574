import { chmod, mkdir, readFile, writeFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { CorruptRecordError } from '../errors.js'
import type { PeerIdString } from '../ids.js'
import { sealBytes, unsealBytes, type KeyProtector } from './key-protector.js'

export const IDENTITY_FILE = 'identity.key'

/** Make the data dir if needed and keep it private to this user (0700). */
export async function ensurePrivateDir (dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  await chmod(dir, 0o700)
}

/** Options of loadOrCreateIdentity. */
export interface IdentityOptions {
  /**
   * Seal the key file with this protector (the desktop app: Electron's safeStorage). A plain
   * key file found is read and rewritten sealed; a sealed one is opened with it. Without a
   * protector a sealed file is refused with SealedKeyError (see unsealBytes).
   */
  protector?: KeyProtector
}

/**
 * The device's libp2p Ed25519 key: made on first run, then read back on every start so the
 * peer id never changes. Written to a temp file and renamed so a crash never leaves half a key.
 *
 * @example
 * const key = await loadOrCreateIdentity('/home/me/.parley')
 * peerIdString(key) // '12D3KooW...'
 */
export async function loadOrCreateIdentity (dataDir: string, options: IdentityOptions = {}): Promise<PrivateKey> {
  await ensurePrivateDir(dataDir)
  const file = join(dataDir, IDENTITY_FILE)
  const protector = options.protector
  let bytes: Uint8Array | undefined
  try {
    bytes = await readFile(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  if (bytes !== undefined) {
    const { plain, wasSealed } = await unsealBytes(`identity key in ${file}`, bytes, protector)
    let key: PrivateKey
    try {
      key = privateKeyFromProtobuf(plain)
    } catch (err) {
      throw new CorruptRecordError(`identity key in ${file} cannot be read: ${(err as Error).message}`)
    }
    // A plain key met with a protector (first start of the desktop app on this data dir): seal it.
    if (!wasSealed && protector !== undefined) await writeKey(file, key, protector)
    return key
  }
  const key = await generateKeyPair('Ed25519')
  await writeKey(file, key, protector)
  return key
}

async function writeKey (file: string, key: PrivateKey, protector: KeyProtector | undefined): Promise<void> {
  const bytes = await sealBytes(privateKeyToProtobuf(key), protector)
  const tmp = `${file}.tmp`
  await writeFile(tmp, bytes, { mode: 0o600 })
  await chmod(tmp, 0o600)
  await rename(tmp, file)
}

export function peerIdString (key: PrivateKey): PeerIdString {
  return peerIdFromPrivateKey(key).toString() as PeerIdString
}
