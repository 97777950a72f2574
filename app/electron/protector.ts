import type { KeyProtector } from '../../core/identity/key-protector.js'

/** The part of Electron's safeStorage used here (async API: the sync one is deprecated). */
export interface SafeStorageLike {
  isAsyncEncryptionAvailable(): Promise<boolean>
  encryptStringAsync(plainText: string): Promise<Buffer>
  decryptStringAsync(encrypted: Buffer): Promise<{ result: string, shouldReEncrypt: boolean }>
  getSelectedStorageBackend(): string
}

/** The name sealed files carry (see KeyProtector.name). */
export const SAFE_STORAGE_PROTECTOR = 'electron-safeStorage'

/** Whether the identity key is sealed, and why (logged at start; see docs/architecture.md). */
export type ProtectorChoice =
  | { protector: KeyProtector, reason: string }
  | { protector: undefined, reason: string }

/**
 * Chooses how the identity key is kept at rest in the desktop app. Call after app `ready`.
 *
 * - safeStorage available with a real OS store (macOS Keychain, Windows DPAPI, Linux
 *   libsecret/kwallet): the key file is sealed with it.
 * - Linux with no secret service (`basic_text`: Chromium falls back to a key hard-coded in
 *   Chromium itself) or safeStorage unavailable: not sealed. Sealing with a public key would
 *   protect nothing and would only lock the data dir to this app; the file stays as core
 *   writes it everywhere, private to the user (0600 in a 0700 dir).
 *
 * A key already sealed stays sealed: if the store later becomes unavailable, start fails with
 * SealedKeyError rather than silently making a new identity.
 */
export async function chooseKeyProtector (safeStorage: SafeStorageLike, platform: NodeJS.Platform): Promise<ProtectorChoice> {
  if (!await safeStorage.isAsyncEncryptionAvailable()) {
    return { protector: undefined, reason: 'safeStorage is not available: identity key kept as a 0600 file' }
  }
  if (platform === 'linux') {
    const backend = safeStorage.getSelectedStorageBackend()
    if (backend === 'basic_text' || backend === 'unknown') {
      return { protector: undefined, reason: `no desktop secret service (safeStorage backend "${backend}"): identity key kept as a 0600 file` }
    }
  }
  return { protector: safeStorageProtector(safeStorage), reason: 'identity key sealed with safeStorage' }
}

/** A KeyProtector over safeStorage: it seals strings, so the bytes travel as base64. */
export function safeStorageProtector (safeStorage: SafeStorageLike): KeyProtector {
  return {
    name: SAFE_STORAGE_PROTECTOR,
    async seal (plain) {
      return await safeStorage.encryptStringAsync(Buffer.from(plain).toString('base64'))
    },
    async open (sealed) {
      const { result } = await safeStorage.decryptStringAsync(Buffer.from(sealed))
      return Buffer.from(result, 'base64')
    }
  }
}
