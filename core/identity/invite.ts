import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { InvalidInviteError, InvalidPeerIdError } from '../errors.js'
import type { PeerIdString } from '../ids.js'

/** What an invite carries: who, where they can be dialled, and an optional display name. */
export interface Invite {
  peerId: PeerIdString
  addrs: string[]
  name?: string
}

const MAX_INVITE_LENGTH = 4096
const MAX_ADDRS = 16
const MAX_NAME = 64

/**
 * Invites are `parley://invite/<peerId>?addr=<multiaddr>&addr=...&name=<name>`. The peer id
 * sits in the path because URL hosts are lower-cased and base58 is case-sensitive.
 *
 * @example
 * const uri = encodeInvite({ peerId, addrs: ['/ip4/127.0.0.1/tcp/4001'], name: 'Ada' })
 * decodeInvite(uri).peerId === peerId // true
 */
export function encodeInvite (invite: Invite): string {
  const params = new URLSearchParams()
  for (const a of invite.addrs.slice(0, MAX_ADDRS)) params.append('addr', a)
  if (invite.name !== undefined && invite.name !== '') params.set('name', invite.name.slice(0, MAX_NAME))
  const query = params.toString()
  return `parley://invite/${invite.peerId}${query === '' ? '' : `?${query}`}`
}

export function decodeInvite (uri: unknown): Invite {
  if (typeof uri !== 'string' || uri.length === 0) throw new InvalidInviteError('invite must be a non-empty string')
  if (uri.length > MAX_INVITE_LENGTH) throw new InvalidInviteError(`invite longer than ${MAX_INVITE_LENGTH} characters`)
  let url: URL
  try {
    url = new URL(uri.trim())
  } catch {
    throw new InvalidInviteError('invite is not a URI')
  }
  if (url.protocol !== 'parley:' || url.host !== 'invite' || url.username !== '' || url.password !== '' || url.hash !== '') {
    throw new InvalidInviteError('invite must start with parley://invite/')
  }
  const peerId = url.pathname.replace(/^\//, '')
  try {
    parsePeerId(peerId)
  } catch {
    throw new InvalidInviteError(`invite names an invalid peer id: ${peerId.slice(0, 80)}`)
  }
  const addrs = url.searchParams.getAll('addr')
  if (addrs.length > MAX_ADDRS) throw new InvalidInviteError(`invite carries more than ${MAX_ADDRS} addresses`)
  for (const a of addrs) {
    try {
      multiaddr(a)
    } catch {
      throw new InvalidInviteError(`invite carries an invalid address: ${a.slice(0, 120)}`)
    }
  }
  const name = url.searchParams.get('name') ?? undefined
  if (name !== undefined && name.length > MAX_NAME) throw new InvalidInviteError(`invite name longer than ${MAX_NAME}`)
  return { peerId: peerId as PeerIdString, addrs, ...(name !== undefined ? { name } : {}) }
}

/** Validate a peer id string; throws InvalidPeerIdError. */
export function parsePeerId (value: unknown): PeerIdString {
  if (typeof value !== 'string' || value.length === 0 || value.length > 128) {
    throw new InvalidPeerIdError('peer id must be a non-empty string')
  }
  try {
    return peerIdFromString(value).toString() as PeerIdString
  } catch {
    throw new InvalidPeerIdError(`not a valid peer id: ${value.slice(0, 80)}`)
  }
}
