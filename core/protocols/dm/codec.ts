import { owned } from '../../bytes.js'
import { isMessageId, type MessageId } from '../../ids.js'
import { MalformedFrameError } from '../errors.js'
import { InvalidEnvelopeError } from './errors.js'
import { avatarProblem, MAX_AVATAR_BYTES, MAX_NAME_LENGTH } from '../../profile.js'
import { MAX_ACK_IDS, MAX_BINDING_BYTES, MAX_GROUP_BODY_BYTES, MAX_PROFILE_BODY_BYTES, MAX_SEALED_BYTES, MAX_TEXT_BYTES } from './constants.js'
import { Ack, Envelope, EnvelopeType, ProfileBody, ReceiptBody, Sealed, SealedType, TextBody } from './pb/dm.js'

/**
 * A validated envelope, as the rest of core sees it: a text message, or a control envelope
 * about the receiver's own messages (`refs`; text empty): a delivery receipt (the sender
 * stored them) or a retry request (the sender got them from a mailbox but could not decrypt
 * them, e.g. after a re-install, and asks for them again over a new session), a group
 * payload (`body`, opaque here; core/groups reads it), or the sender's profile (`profile`).
 */
export interface DmEnvelope {
  id: MessageId
  lamport: number
  sentAt: number
  type: 'text' | 'receipt' | 'retry' | 'group' | 'profile'
  text: string
  refs?: MessageId[]
  body?: Uint8Array
  profile?: ProfileData
}

/**
 * A PROFILE envelope's content, checked as strictly as local input (core/profile.ts): the
 * name trimmed and at most 64 characters ('' for none), the avatar a PNG, JPEG or WebP of at
 * most 48 KiB and 1024 px a side (absent for none).
 */
export interface ProfileData {
  version: number
  name: string
  avatar?: Uint8Array
  /** The sender has no profile of ours and asks for it. */
  request: boolean
}

const TYPES: ReadonlyMap<DmEnvelope['type'], EnvelopeType> = new Map([
  ['text', EnvelopeType.TEXT], ['receipt', EnvelopeType.RECEIPT], ['retry', EnvelopeType.RETRY], ['group', EnvelopeType.GROUP],
  ['profile', EnvelopeType.PROFILE]
])

/** Most ids one receipt may carry. */
export const MAX_RECEIPT_IDS = 1024

export function textByteLength (text: string): number {
  return Buffer.byteLength(text, 'utf8')
}

export function writeEnvelope (env: DmEnvelope): Uint8Array<ArrayBuffer> {
  return Envelope.encode({
    id: env.id,
    lamport: env.lamport,
    sentAt: env.sentAt,
    type: TYPES.get(env.type) ?? EnvelopeType.TEXT,
    body: writeBody(env)
  })
}

function writeBody (env: DmEnvelope): Uint8Array<ArrayBuffer> {
  switch (env.type) {
    case 'text': return TextBody.encode({ text: env.text })
    case 'group': return owned(env.body ?? new Uint8Array(0))
    case 'profile': {
      const p = env.profile ?? { version: 0, name: '', request: false }
      return ProfileBody.encode({ version: p.version, name: p.name, avatar: owned(p.avatar ?? new Uint8Array(0)), request: p.request })
    }
    default: return ReceiptBody.encode({ ids: [...(env.refs ?? [])] })
  }
}

/** `decode()`'s result, or MalformedFrameError naming `what` did not decode. */
function decoded<T> (what: string, decode: () => T): T {
  try {
    return decode()
  } catch (err) {
    throw new MalformedFrameError(`${what} does not decode: ${(err as Error).message}`)
  }
}

/** Decode and check a PROFILE body; throws MalformedFrameError / InvalidEnvelopeError naming what is wrong. */
export function readProfile (body: Uint8Array): ProfileData {
  if (body.byteLength > MAX_PROFILE_BODY_BYTES) throw new InvalidEnvelopeError(`profile body over ${MAX_PROFILE_BODY_BYTES} bytes`)
  const p: ProfileBody = decoded('profile body', () => ProfileBody.decode(body))
  if (!Number.isSafeInteger(p.version) || p.version < 1) throw new InvalidEnvelopeError('profile version must be a positive integer')
  if (p.name !== p.name.trim() || p.name.length > MAX_NAME_LENGTH) throw new InvalidEnvelopeError(`profile name must be trimmed and at most ${MAX_NAME_LENGTH} characters`)
  if (p.avatar.byteLength > MAX_AVATAR_BYTES) throw new InvalidEnvelopeError(`profile avatar over ${MAX_AVATAR_BYTES} bytes`)
  const problem = p.avatar.byteLength === 0 ? undefined : avatarProblem(p.avatar)
  if (problem !== undefined) throw new InvalidEnvelopeError(`profile ${problem}`)
  return { version: p.version, name: p.name, ...(p.avatar.byteLength > 0 ? { avatar: p.avatar } : {}), request: p.request }
}

/** Decode and validate one envelope frame; throws MalformedFrameError / InvalidEnvelopeError. */
export function readEnvelope (frame: Uint8Array): DmEnvelope {
  const env: Envelope = decoded('envelope', () => Envelope.decode(frame))
  if (!isMessageId(env.id)) throw new InvalidEnvelopeError('envelope id is not a ULID')
  if (!Number.isSafeInteger(env.lamport) || env.lamport < 1) throw new InvalidEnvelopeError('envelope lamport must be a positive integer')
  if (!Number.isSafeInteger(env.sentAt) || env.sentAt < 0) throw new InvalidEnvelopeError('envelope sentAt must be a timestamp')
  if (env.type === EnvelopeType.RECEIPT || env.type === EnvelopeType.RETRY) {
    const receipt: ReceiptBody = decoded('receipt body', () => ReceiptBody.decode(env.body, { limits: { ids: MAX_RECEIPT_IDS } }))
    if (receipt.ids.length === 0 || !receipt.ids.every(isMessageId)) throw new InvalidEnvelopeError('receipt ids must be ULIDs')
    return { id: env.id, lamport: env.lamport, sentAt: env.sentAt, type: env.type === EnvelopeType.RECEIPT ? 'receipt' : 'retry', text: '', refs: receipt.ids }
  }
  if (env.type === EnvelopeType.GROUP) {
    if (env.body.byteLength === 0 || env.body.byteLength > MAX_GROUP_BODY_BYTES) throw new InvalidEnvelopeError(`group body must be 1-${MAX_GROUP_BODY_BYTES} bytes`)
    return { id: env.id, lamport: env.lamport, sentAt: env.sentAt, type: 'group', text: '', body: env.body }
  }
  if (env.type === EnvelopeType.PROFILE) {
    return { id: env.id, lamport: env.lamport, sentAt: env.sentAt, type: 'profile', text: '', profile: readProfile(env.body) }
  }
  if (env.type !== EnvelopeType.TEXT) throw new InvalidEnvelopeError(`unsupported envelope type ${String(env.type)}`)
  if (env.body.byteLength > MAX_TEXT_BYTES + 16) throw new InvalidEnvelopeError('text body too large')
  const body: TextBody = decoded('text body', () => TextBody.decode(env.body))
  if (textByteLength(body.text) > MAX_TEXT_BYTES) throw new InvalidEnvelopeError(`text over ${MAX_TEXT_BYTES} bytes`)
  return { id: env.id, lamport: env.lamport, sentAt: env.sentAt, type: 'text', text: body.text }
}

/**
 * What travels on /parley/dm and in relay mailboxes: an encrypted envelope and the little a
 * relay needs in clear (the id, for acks and dedupe). `binding` rides on first messages.
 */
export interface SealedFrame {
  id: MessageId
  kind: 'prekey' | 'whisper'
  ciphertext: Uint8Array
  binding?: Uint8Array
}

export function writeSealed (s: SealedFrame): Uint8Array<ArrayBuffer> {
  return Sealed.encode({
    id: s.id,
    type: s.kind === 'prekey' ? SealedType.PREKEY : SealedType.WHISPER,
    ciphertext: owned(s.ciphertext),
    binding: s.binding !== undefined ? owned(s.binding) : new Uint8Array()
  })
}

/** Decode and validate one Sealed frame; throws MalformedFrameError / InvalidEnvelopeError. */
export function readSealed (frame: Uint8Array): SealedFrame {
  if (frame.byteLength > MAX_SEALED_BYTES) throw new InvalidEnvelopeError(`sealed envelope over ${MAX_SEALED_BYTES} bytes`)
  const s: Sealed = decoded('sealed envelope', () => Sealed.decode(frame))
  if (!isMessageId(s.id)) throw new InvalidEnvelopeError('sealed envelope id is not a ULID')
  if (s.ciphertext.byteLength === 0) throw new InvalidEnvelopeError('sealed envelope has no ciphertext')
  if (s.type === SealedType.PREKEY) {
    if (s.binding.byteLength === 0 || s.binding.byteLength > MAX_BINDING_BYTES) throw new InvalidEnvelopeError('first message without a valid binding')
    return { id: s.id, kind: 'prekey', ciphertext: s.ciphertext, binding: s.binding }
  }
  if (s.type !== SealedType.WHISPER) throw new InvalidEnvelopeError(`unsupported sealed type ${String(s.type)}`)
  if (s.binding.byteLength !== 0) throw new InvalidEnvelopeError('binding on a message that is not a first message')
  return { id: s.id, kind: 'whisper', ciphertext: s.ciphertext }
}

/** An envelope the receiver could not take, and why (a Parley error name). */
export interface Rejection {
  id: MessageId
  error: string
}

export interface AckFrame {
  ids: MessageId[]
  rejected: Rejection[]
}

const MAX_ERROR_NAME = 64

export function writeAck (ids: readonly MessageId[], rejected: readonly Rejection[] = []): Uint8Array {
  return Ack.encode({ ids: [...ids], rejected: rejected.map((r) => ({ id: r.id, error: r.error.slice(0, MAX_ERROR_NAME) })) })
}

export function readAck (frame: Uint8Array): AckFrame {
  const ack: Ack = decoded('ack', () => Ack.decode(frame, { limits: { ids: MAX_ACK_IDS, rejected: MAX_ACK_IDS } }))
  for (const id of ack.ids) {
    if (!isMessageId(id)) throw new MalformedFrameError('ack carries an id that is not a ULID')
  }
  for (const r of ack.rejected) {
    if (!isMessageId(r.id) || r.error.length === 0 || r.error.length > MAX_ERROR_NAME) throw new MalformedFrameError('ack carries a malformed rejection')
  }
  return { ids: ack.ids as MessageId[], rejected: ack.rejected.map((r) => ({ id: r.id as MessageId, error: r.error })) }
}
