import { KEMPublicKey, PublicKey } from '@signalapp/libsignal-client'
import { owned } from '../../bytes.js'
import { verifyBinding } from '../../crypto/binding.js'
import { parsePeerId } from '../../identity/invite.js'
import type { PeerIdString } from '../../ids.js'
import { ProtocolLimitError } from '../errors.js'
import {
  EC_PUBLIC_KEY_BYTES, KYBER_PUBLIC_KEY_BYTES, MAX_BINDING_BYTES, MAX_DEVICE_ID, MAX_ONE_TIME_KEYS_PER_PUBLISH, SIGNATURE_BYTES
} from './constants.js'
import { InvalidBundleError } from './errors.js'
import { BundleHeader, type Bundle, type OneTimeKey, type SignedKey } from './pb/prekeys.js'

/** A prekey signed by the owner's Signal identity key (the signed EC prekey or the Kyber prekey). */
export interface SignedKeyData { id: number, publicKey: Uint8Array, signature: Uint8Array }
/** A one-time EC prekey (unsigned; handed out once). */
export interface OneTimeKeyData { id: number, publicKey: Uint8Array }
/** What every bundle of one owner has in common; replaced as a whole on each publish. */
export interface BundleHeaderData {
  identityKey: Uint8Array
  /** The owner's libp2p signature over `identityKey` (core/crypto/binding.ts). */
  binding: Uint8Array
  registrationId: number
  deviceId: number
  signedPreKey: SignedKeyData
  kyberPreKey: SignedKeyData
}
/** A bundle as handed out: the header and at most one one-time prekey. */
export interface BundleData { header: BundleHeaderData, oneTime?: OneTimeKeyData }

const UINT32_MAX = 0xffff_ffff

function invalid (message: string): never {
  throw new InvalidBundleError(message)
}

function isUint32 (n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= UINT32_MAX
}

function checkBytes (value: unknown, what: string, min: number, max = min): void {
  if (!(value instanceof Uint8Array)) invalid(`${what} is not bytes`)
  if (value.byteLength < min || value.byteLength > max) {
    invalid(`${what} is ${value.byteLength} bytes, expected ${min === max ? String(min) : `${min}..${max}`}`)
  }
}

function checkSignedKey (key: unknown, what: string, publicKeyBytes: number): void {
  if (typeof key !== 'object' || key === null) invalid(`${what} is missing`)
  const k = key as Partial<SignedKeyData>
  if (!isUint32(k.id)) invalid(`${what} id is not a uint32`)
  checkBytes(k.publicKey, `${what} public key`, publicKeyBytes)
  checkBytes(k.signature, `${what} signature`, SIGNATURE_BYTES)
}

/**
 * Field presence, integer ranges and exact key and signature sizes of a header; throws
 * InvalidBundleError. Cheap and synchronous: no signature is checked (see verifyHeader).
 */
export function checkHeaderShape (header: unknown): asserts header is BundleHeaderData {
  if (typeof header !== 'object' || header === null) invalid('bundle header is missing')
  const h = header as Partial<BundleHeaderData>
  checkBytes(h.identityKey, 'identity key', EC_PUBLIC_KEY_BYTES)
  checkBytes(h.binding, 'binding signature', 1, MAX_BINDING_BYTES)
  if (!isUint32(h.registrationId)) invalid('registration id is not a uint32')
  if (!isUint32(h.deviceId) || h.deviceId < 1 || h.deviceId > MAX_DEVICE_ID) invalid(`device id must be 1..${MAX_DEVICE_ID}`)
  checkSignedKey(h.signedPreKey, 'signed prekey', EC_PUBLIC_KEY_BYTES)
  checkSignedKey(h.kyberPreKey, 'Kyber prekey', KYBER_PUBLIC_KEY_BYTES)
}

/** A one-time key's id, size, and that it deserializes as a libsignal PublicKey; throws InvalidBundleError. */
export function checkOneTimeKey (key: unknown): asserts key is OneTimeKeyData {
  if (typeof key !== 'object' || key === null) invalid('one-time key is missing')
  const k = key as Partial<OneTimeKeyData>
  if (!isUint32(k.id)) invalid('one-time key id is not a uint32')
  checkBytes(k.publicKey, 'one-time key', EC_PUBLIC_KEY_BYTES)
  try {
    PublicKey.deserialize(owned(k.publicKey as Uint8Array))
  } catch (err) {
    invalid(`one-time key ${k.id} does not deserialize: ${(err as Error).message}`)
  }
}

function checkOneTimeKeyCount (n: number): void {
  if (n > MAX_ONE_TIME_KEYS_PER_PUBLISH) {
    throw new ProtocolLimitError(`${n} one-time keys in one publish; at most ${MAX_ONE_TIME_KEYS_PER_PUBLISH}`)
  }
}

/**
 * The one-time keys of one publish: at most MAX_ONE_TIME_KEYS_PER_PUBLISH
 * (ProtocolLimitError), each valid, ids distinct (InvalidBundleError).
 */
export function checkOneTimeKeys (keys: readonly unknown[]): asserts keys is readonly OneTimeKeyData[] {
  checkOneTimeKeyCount(keys.length)
  const ids = new Set<number>()
  for (const key of keys) {
    checkOneTimeKey(key)
    if (ids.has(key.id)) invalid(`one-time key id ${key.id} appears twice`)
    ids.add(key.id)
  }
}

/**
 * Is this header really `owner`'s? Shape and sizes (InvalidBundleError), then the binding:
 * the identity key must be signed by `owner`'s libp2p key (BindingError), then both prekeys
 * must deserialize and carry the identity key's signature over their serialized public key
 * (InvalidBundleError). A relay can withhold or replay a header but not forge one.
 *
 * @example
 * await verifyHeader(bobId, bundle.header) // throws BindingError if a relay swapped the identity key
 */
export async function verifyHeader (owner: PeerIdString, header: BundleHeaderData): Promise<void> {
  checkHeaderShape(header)
  const peer = parsePeerId(owner)
  await verifyBinding(peer, header.identityKey, header.binding)
  let identity: PublicKey
  try {
    identity = PublicKey.deserialize(owned(header.identityKey))
    PublicKey.deserialize(owned(header.signedPreKey.publicKey))
    KEMPublicKey.deserialize(owned(header.kyberPreKey.publicKey))
  } catch (err) {
    invalid(`a bundle key does not deserialize: ${(err as Error).message}`)
  }
  for (const [what, key] of [['signed prekey', header.signedPreKey], ['Kyber prekey', header.kyberPreKey]] as const) {
    let ok: boolean
    try {
      ok = identity.verify(owned(key.publicKey), owned(key.signature))
    } catch {
      ok = false
    }
    if (!ok) invalid(`the ${what} is not signed by the identity key`)
  }
}

// Conversions between these types and the protons (wire) types. The *FromPb helpers copy
// every byte array out of the frame and validate shapes; signatures are verifyHeader's job.

export function signedKeyToPb (key: SignedKeyData): SignedKey {
  return { id: key.id, publicKey: owned(key.publicKey), signature: owned(key.signature) }
}

export function headerToPb (header: BundleHeaderData): BundleHeader {
  return {
    identityKey: owned(header.identityKey),
    binding: owned(header.binding),
    registrationId: header.registrationId,
    deviceId: header.deviceId,
    signedPreKey: signedKeyToPb(header.signedPreKey),
    kyberPreKey: signedKeyToPb(header.kyberPreKey)
  }
}

export function oneTimeKeyToPb (key: OneTimeKeyData): OneTimeKey {
  return { id: key.id, publicKey: owned(key.publicKey) }
}

export function bundleToPb (bundle: BundleData): Bundle {
  return {
    header: headerToPb(bundle.header),
    ...(bundle.oneTime !== undefined ? { oneTime: oneTimeKeyToPb(bundle.oneTime) } : {})
  }
}

/** A plain copy (Buffer#slice would share memory with the frame). */
function copy (bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(bytes)
}

function signedKeyFromPb (key: SignedKey | undefined): SignedKeyData | undefined {
  return key === undefined ? undefined : { id: key.id, publicKey: copy(key.publicKey), signature: copy(key.signature) }
}

/** A decoded header, copied and shape-checked (InvalidBundleError). */
export function headerFromPb (pb: BundleHeader | undefined): BundleHeaderData {
  if (pb === undefined) invalid('bundle header is missing')
  const header = {
    identityKey: copy(pb.identityKey),
    binding: copy(pb.binding),
    registrationId: pb.registrationId,
    deviceId: pb.deviceId,
    signedPreKey: signedKeyFromPb(pb.signedPreKey),
    kyberPreKey: signedKeyFromPb(pb.kyberPreKey)
  }
  checkHeaderShape(header)
  return header
}

/** A decoded one-time key, copied and checked (InvalidBundleError). */
export function oneTimeKeyFromPb (pb: OneTimeKey): OneTimeKeyData {
  const key = { id: pb.id, publicKey: copy(pb.publicKey) }
  checkOneTimeKey(key)
  return key
}

/** The decoded one-time keys of a publish (see checkOneTimeKeys). */
export function oneTimeKeysFromPb (pbs: readonly OneTimeKey[]): OneTimeKeyData[] {
  checkOneTimeKeyCount(pbs.length) // before copying anything
  const keys = pbs.map(oneTimeKeyFromPb)
  checkOneTimeKeys(keys)
  return keys
}

/** A decoded bundle: header shape and one-time key checked (InvalidBundleError); not yet verified. */
export function bundleFromPb (pb: Bundle): BundleData {
  const header = headerFromPb(pb.header)
  return pb.oneTime === undefined ? { header } : { header, oneTime: oneTimeKeyFromPb(pb.oneTime) }
}

/** A header as bytes (what a relay stores). */
export function encodeHeader (header: BundleHeaderData): Uint8Array<ArrayBuffer> {
  return BundleHeader.encode(headerToPb(header))
}

/** Bytes from encodeHeader back to a shape-checked header (InvalidBundleError if they are not one). */
export function decodeHeader (bytes: Uint8Array): BundleHeaderData {
  let pb: BundleHeader
  try {
    pb = BundleHeader.decode(bytes)
  } catch (err) {
    invalid(`bundle header does not decode: ${(err as Error).message}`)
  }
  return headerFromPb(pb)
}
