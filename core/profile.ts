import { createHash } from 'node:crypto'

/**
 * Profiles (display name and avatar) as contacts see them: the checks that local input
 * (`profile.set`) and a contact's PROFILE envelope both go through, so a hostile peer can
 * make us store nothing that the user could not have set. See docs/architecture.md,
 * "Profiles".
 *
 * @example
 * const bytes = decodeBase64(input)               // undefined: not canonical base64
 * const problem = bytes === undefined ? 'not base64' : avatarProblem(bytes)
 * if (problem === undefined) store(imageType(bytes)?.mime, avatarHash(bytes))
 */

/** Largest display name, in UTF-16 code units (as the renderer's maxLength counts). */
export const MAX_NAME_LENGTH = 64
/**
 * Largest avatar, in bytes. A PROFILE envelope (avatar, name, headers) must fit a DM envelope
 * (64 KiB + 1 KiB), a relay mailbox item (70 KiB) and a relayed connection (libp2p's default
 * 128 KiB) with room to spare; a 128x128 JPEG or WebP, what the app makes, is 3-15 KiB.
 */
export const MAX_AVATAR_BYTES = 48 * 1024
/** Largest width or height of an avatar: a small file must not decode into a huge bitmap. */
export const MAX_AVATAR_SIDE = 1024

export type AvatarMime = 'image/png' | 'image/jpeg' | 'image/webp'

export interface ImageInfo { mime: AvatarMime, width: number, height: number }

/** A name as stored and shared: trimmed, 1-64 characters; otherwise the reason it is not. */
export function nameProblem (name: unknown): string | undefined {
  if (typeof name !== 'string') return 'name must be a string'
  const trimmed = name.trim()
  if (trimmed.length === 0 || trimmed.length > MAX_NAME_LENGTH) return `name must be 1-${MAX_NAME_LENGTH} characters`
  return undefined
}

/** Why these bytes are not an acceptable avatar, or undefined if they are. */
export function avatarProblem (bytes: Uint8Array): string | undefined {
  if (bytes.byteLength === 0) return 'avatar is empty'
  if (bytes.byteLength > MAX_AVATAR_BYTES) return `avatar is ${bytes.byteLength} bytes; at most ${MAX_AVATAR_BYTES} (${MAX_AVATAR_BYTES / 1024} KiB) are allowed`
  const info = imageType(bytes)
  if (info === undefined) return 'avatar is not a PNG, JPEG or WebP image'
  if (info.width < 1 || info.height < 1 || info.width > MAX_AVATAR_SIDE || info.height > MAX_AVATAR_SIDE) {
    return `avatar is ${info.width}x${info.height}; each side must be 1-${MAX_AVATAR_SIDE} pixels`
  }
  return undefined
}

/** A short content hash of an avatar: clients refetch the picture when it changes. */
export function avatarHash (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 16)
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

/**
 * Strict base64 (standard alphabet, padded, no whitespace, canonical), decoded; undefined
 * if `text` is anything else. At most `maxBytes` decoded bytes (checked before decoding).
 */
export function decodeBase64 (text: string, maxBytes: number): Uint8Array | 'too large' | undefined {
  if (text.length % 4 !== 0 || !BASE64.test(text)) return undefined
  if (text.length / 4 * 3 > maxBytes + 2) return 'too large'
  const bytes = Buffer.from(text, 'base64')
  if (bytes.toString('base64') !== text) return undefined
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/**
 * The format and size of a PNG, JPEG or WebP image, read from its header (magic bytes and
 * the first frame header); undefined for anything else or a header cut short.
 */
export function imageType (b: Uint8Array): ImageInfo | undefined {
  const ascii = (at: number, s: string): boolean => s.split('').every((ch, i) => b[at + i] === ch.charCodeAt(0))
  const be16 = (at: number): number => ((b[at] ?? 0) << 8) | (b[at + 1] ?? 0)
  const le16 = (at: number): number => (b[at] ?? 0) | ((b[at + 1] ?? 0) << 8)
  const le24 = (at: number): number => le16(at) | ((b[at + 2] ?? 0) << 16)
  const be32 = (at: number): number => be16(at) * 0x10000 + be16(at + 2)
  // PNG: signature, then the IHDR chunk (width, height).
  if (b.byteLength >= 24 && [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a].every((v, i) => b[i] === v)) {
    if (!ascii(12, 'IHDR')) return undefined
    return { mime: 'image/png', width: be32(16), height: be32(20) }
  }
  // JPEG: SOI, then segments until a start-of-frame (height, width).
  if (b[0] === 0xff && b[1] === 0xd8) {
    let i = 2
    while (i + 4 <= b.byteLength) {
      if (b[i] !== 0xff) return undefined
      const marker = b[i + 1] ?? 0
      if (marker === 0xff) { i++; continue } // fill byte
      if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) { i += 2; continue } // no length
      if (marker === 0xd9 || marker === 0xda) return undefined // end or scan before any frame header
      const length = be16(i + 2)
      if (length < 2) return undefined
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        if (i + 9 > b.byteLength) return undefined
        return { mime: 'image/jpeg', width: be16(i + 7), height: be16(i + 5) }
      }
      i += 2 + length
    }
    return undefined
  }
  // WebP: RIFF container, then a VP8 (lossy), VP8L (lossless) or VP8X (extended) chunk.
  if (b.byteLength >= 30 && ascii(0, 'RIFF') && ascii(8, 'WEBP')) {
    const riffSize = le16(4) + le16(6) * 0x10000
    if (riffSize + 8 > b.byteLength || riffSize < 22) return undefined
    if (ascii(12, 'VP8 ')) {
      if (b[23] !== 0x9d || b[24] !== 0x01 || b[25] !== 0x2a) return undefined
      return { mime: 'image/webp', width: le16(26) & 0x3fff, height: le16(28) & 0x3fff }
    }
    if (ascii(12, 'VP8L')) {
      if (b[20] !== 0x2f) return undefined
      const bits = le16(21) + le16(23) * 0x10000
      return { mime: 'image/webp', width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 }
    }
    if (ascii(12, 'VP8X')) return { mime: 'image/webp', width: le24(24) + 1, height: le24(27) + 1 }
    return undefined
  }
  return undefined
}
