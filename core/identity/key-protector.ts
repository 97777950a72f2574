import { SealedKeyError } from '../errors.js'

/**
 * Seals key material before it is written to disk and opens it again on load, with a key
 * this process does not keep in the data dir (the desktop app: Electron's safeStorage, which
 * asks the OS keychain, DPAPI or the desktop's secret service). Core never needs one: without
 * a protector the identity key file is written as plain bytes, private to the user (0600).
 *
 * `name` is written next to the sealed bytes, so a file sealed by one protector is refused
 * with a clear SealedKeyError (not garbage) when opened without it or by another one.
 *
 * @example
 * const protector: KeyProtector = {
 *   name: 'electron-safeStorage',
 *   seal: async (plain) => await safeStorage.encryptStringAsync(Buffer.from(plain).toString('base64')),
 *   open: async (sealed) => Buffer.from((await safeStorage.decryptStringAsync(Buffer.from(sealed))).result, 'base64')
 * }
 * const m = new Messenger({ dataDir, keyProtector: protector })
 */
export interface KeyProtector {
  /** Which protector sealed a file: 1-64 printable ASCII characters. */
  readonly name: string
  seal(plain: Uint8Array): Promise<Uint8Array>
  /** Throws if the bytes were not sealed by this protector (wrong key, damaged file). */
  open(sealed: Uint8Array): Promise<Uint8Array>
}

/**
 * Sealed files start with these bytes. A plain identity key is a libp2p protobuf whose
 * first byte is 0x08 (field 1, varint), so the two can never be confused.
 */
const MAGIC = new TextEncoder().encode('PARLEY-SEALED\x01')
const MAX_NAME = 64

/** `MAGIC | name length (1 byte) | name (ASCII) | sealed bytes`. */
export function encodeSealed (protectorName: string, sealed: Uint8Array): Uint8Array<ArrayBuffer> {
  checkName(protectorName)
  const name = new TextEncoder().encode(protectorName)
  const out = new Uint8Array(MAGIC.length + 1 + name.length + sealed.length)
  out.set(MAGIC, 0)
  out[MAGIC.length] = name.length
  out.set(name, MAGIC.length + 1)
  out.set(sealed, MAGIC.length + 1 + name.length)
  return out
}

/** The protector's name and sealed bytes, or undefined when `bytes` is not a sealed file. */
export function decodeSealed (bytes: Uint8Array): { protector: string, sealed: Uint8Array } | undefined {
  if (bytes.length < MAGIC.length + 1 || !MAGIC.every((b, i) => bytes[i] === b)) return undefined
  const len = bytes[MAGIC.length] ?? 0
  const start = MAGIC.length + 1
  if (len < 1 || len > MAX_NAME || bytes.length < start + len) throw new SealedKeyError('sealed key file is truncated')
  const protector = new TextDecoder().decode(bytes.subarray(start, start + len))
  return { protector, sealed: bytes.subarray(start + len) }
}

/**
 * Stored bytes made plain: opened with `protector` when sealed, as they are when plain.
 * `what` names them in errors. A sealed value met without its protector, or one it cannot
 * open, is a SealedKeyError (never garbage).
 */
export async function unsealBytes (what: string, bytes: Uint8Array, protector: KeyProtector | undefined): Promise<{ plain: Uint8Array, wasSealed: boolean }> {
  const sealed = decodeSealed(bytes)
  if (sealed === undefined) return { plain: bytes, wasSealed: false }
  if (protector === undefined || protector.name !== sealed.protector) {
    throw new SealedKeyError(`${what} is sealed by "${sealed.protector}"${protector === undefined ? '' : ` (not "${protector.name}")`}: start Parley with the app that sealed it (the desktop app)`)
  }
  try {
    return { plain: await protector.open(sealed.sealed), wasSealed: true }
  } catch (err) {
    throw new SealedKeyError(`${what} cannot be opened by "${protector.name}": ${(err as Error).message}`)
  }
}

/** `plain` sealed by `protector` (see encodeSealed), or as it is without one. */
export async function sealBytes (plain: Uint8Array, protector: KeyProtector | undefined): Promise<Uint8Array<ArrayBuffer>> {
  return protector === undefined ? Uint8Array.from(plain) : encodeSealed(protector.name, await protector.seal(plain))
}

function checkName (name: string): void {
  if (!/^[\x21-\x7e]{1,64}$/.test(name)) throw new SealedKeyError(`not a protector name (1-${MAX_NAME} printable ASCII): ${JSON.stringify(name.slice(0, 80))}`)
}
