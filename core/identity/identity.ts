import { chmod, mkdir, readFile, writeFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { CorruptRecordError } from '../errors.js'
import type { PeerIdString } from '../ids.js'

export const IDENTITY_FILE = 'identity.key'

/** Make the data dir if needed and keep it private to this user (0700). */
export async function ensurePrivateDir (dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  await chmod(dir, 0o700)
}

/**
 * The device's libp2p Ed25519 key: made on first run, then read back on every start so the
 * peer id never changes. Written to a temp file and renamed so a crash never leaves half a key.
 *
 * @example
 * const key = await loadOrCreateIdentity('/home/me/.parley')
 * peerIdString(key) // '12D3KooW...'
 */
export async function loadOrCreateIdentity (dataDir: string): Promise<PrivateKey> {
  await ensurePrivateDir(dataDir)
  const file = join(dataDir, IDENTITY_FILE)
  let bytes: Uint8Array | undefined
  try {
    bytes = await readFile(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  if (bytes !== undefined) {
    try {
      return privateKeyFromProtobuf(bytes)
    } catch (err) {
      throw new CorruptRecordError(`identity key in ${file} cannot be read: ${(err as Error).message}`)
    }
  }
  const key = await generateKeyPair('Ed25519')
  const tmp = `${file}.tmp`
  await writeFile(tmp, privateKeyToProtobuf(key), { mode: 0o600 })
  await chmod(tmp, 0o600)
  await rename(tmp, file)
  return key
}

export function peerIdString (key: PrivateKey): PeerIdString {
  return peerIdFromPrivateKey(key).toString() as PeerIdString
}
