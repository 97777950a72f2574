import { randomFillSync } from 'node:crypto'

declare const brand: unique symbol
type Brand<T, B extends string> = T & { readonly [brand]: B }

/** A libp2p peer id in its string form (base58btc, `12D3Koo...`). */
export type PeerIdString = Brand<string, 'PeerIdString'>
/** A message id: a ULID, time-sortable, 26 Crockford base32 characters. */
export type MessageId = Brand<string, 'MessageId'>
/** A 1:1 conversation is named by the other peer's id. */
export type ConversationId = Brand<string, 'ConversationId'>

const ENCODING = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
const ULID_RE = /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/

export function isMessageId (value: unknown): value is MessageId {
  return typeof value === 'string' && ULID_RE.test(value)
}

/**
 * Monotonic ULID generator: ids made in the same millisecond (or after the clock stepped
 * back) increment the random part, so one node's ids always sort in creation order.
 *
 * @example
 * const next = ulidFactory()
 * next() < next() // true
 */
export function ulidFactory (now: () => number = Date.now): () => MessageId {
  let lastTime = -1
  const lastRandom = new Uint8Array(10)
  return () => {
    let time = now()
    if (time <= lastTime) {
      time = lastTime
      incrementRandom(lastRandom)
    } else {
      lastTime = time
      randomFillSync(lastRandom)
      lastRandom[0] = (lastRandom[0] ?? 0) & 0x7f // leave headroom so increments never overflow
    }
    return (encodeTime(time) + encodeRandom(lastRandom)) as MessageId
  }
}

function incrementRandom (bytes: Uint8Array): void {
  for (let i = bytes.length - 1; i >= 0; i--) {
    const v = bytes[i] ?? 0
    if (v < 255) {
      bytes[i] = v + 1
      return
    }
    bytes[i] = 0
  }
}

function encodeTime (time: number): string {
  let out = ''
  let t = time
  for (let i = 0; i < 10; i++) {
    out = ENCODING.charAt(t % 32) + out
    t = Math.floor(t / 32)
  }
  return out
}

function encodeRandom (bytes: Uint8Array): string {
  // 80 bits -> 16 base32 characters
  let out = ''
  let acc = 0
  let bits = 0
  for (const b of bytes) {
    acc = (acc << 8) | b
    bits += 8
    while (bits >= 5) {
      out += ENCODING.charAt((acc >>> (bits - 5)) & 31)
      bits -= 5
    }
    acc &= (1 << bits) - 1
  }
  return out
}

/** Milliseconds since the epoch encoded in a ULID. */
export function ulidTime (id: MessageId): number {
  let t = 0
  for (let i = 0; i < 10; i++) {
    t = t * 32 + ENCODING.indexOf(id.charAt(i))
  }
  return t
}

export const newMessageId = ulidFactory()

/** A group id: 22 base64url characters (128 random bits), chosen by the group's creator. */
export type GroupId = Brand<string, 'GroupId'>

const GROUP_ID_RE = /^[A-Za-z0-9_-]{22}$/

export function isGroupId (value: unknown): value is GroupId {
  return typeof value === 'string' && GROUP_ID_RE.test(value)
}

export function newGroupId (): GroupId {
  const bytes = new Uint8Array(16)
  randomFillSync(bytes)
  return Buffer.from(bytes).toString('base64url') as GroupId
}
