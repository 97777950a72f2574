import { InvalidRequestError } from '../errors.js'
import type { MessageId, PeerIdString } from '../ids.js'
import type { GroupChanges, GroupListOptions } from './types.js'

/**
 * A conversation's messages sort by (lamport, sender, id): every replica orders the same
 * set the same way whatever order it arrived in. Lamport is fixed-width hex so string
 * order is numeric order.
 */
export function messageSortKey (conversation: PeerIdString, lamport: number, from: PeerIdString, id: MessageId): string {
  return `${conversation}\x00${lamport.toString(16).padStart(14, '0')}\x00${from}\x00${id}`
}

export function conversationRange (conversation: PeerIdString): { gt: string, lt: string } {
  return { gt: `${conversation}\x00`, lt: `${conversation}\x01` }
}

export function outboxKey (to: PeerIdString, id: MessageId): string {
  return `${to}\x00${id}`
}

/** Longest key the group area takes (UTF-16 code units). */
export const MAX_GROUP_KEY_LENGTH = 1024

/** In a `u` regexp a surrogate pair is one code point, so this matches only unpaired halves. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u

/** Refuse a group-area write with a malformed key or value before any of it is written. */
export function checkGroupChanges (changes: GroupChanges): void {
  for (const [key, value] of changes) {
    // A lone surrogate would not survive UTF-8 (the journal, level): it would come back as another key.
    if (typeof key !== 'string' || key.length === 0 || key.length > MAX_GROUP_KEY_LENGTH || LONE_SURROGATE.test(key)) {
      throw new InvalidRequestError(`group area key must be 1..${MAX_GROUP_KEY_LENGTH} characters of well-formed Unicode`)
    }
    if (value !== null && !(value instanceof Uint8Array)) throw new InvalidRequestError(`group area value for ${key} is not bytes`)
  }
}

/** Refuse a negative or fractional listing limit. */
export function checkGroupListOptions (options: GroupListOptions): void {
  const limit = options.limit
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) throw new InvalidRequestError('limit must be a non-negative integer')
}

/**
 * Where a group-area listing starts: `gte` if it lies beyond `prefix`, else `prefix` (every
 * key starting with `prefix` sorts at or after it).
 */
export function groupListStart (prefix: string, options: GroupListOptions): string {
  return options.gte !== undefined && compareKeys(options.gte, prefix) > 0 ? options.gte : prefix
}

/**
 * Key order as level keeps it: UTF-8 bytes, i.e. code points. Plain `<` compares UTF-16 code
 * units, which differs when a character beyond U+FFFF meets one in U+E000..U+FFFF.
 */
export function compareKeys (a: string, b: string): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i)
    const y = b.charCodeAt(i)
    if (x === y) continue
    const cx = a.codePointAt(i) as number
    const cy = b.codePointAt(i) as number
    return cx < cy ? -1 : cx > cy ? 1 : 0
  }
  return a.length - b.length
}
