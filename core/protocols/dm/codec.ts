import { isMessageId, type MessageId } from '../../ids.js'
import { MalformedFrameError } from '../errors.js'
import { InvalidEnvelopeError } from './errors.js'
import { MAX_ACK_IDS, MAX_TEXT_BYTES } from './constants.js'
import { Ack, Envelope, EnvelopeType, ReceiptBody, TextBody } from './pb/dm.js'

/**
 * A validated envelope, as the rest of core sees it: a text message, or a delivery receipt
 * (`receiptFor`: ids of the receiver's own messages that the sender has stored; text empty).
 */
export interface DmEnvelope {
  id: MessageId
  lamport: number
  sentAt: number
  type: 'text' | 'receipt'
  text: string
  receiptFor?: MessageId[]
}

/** Most ids one receipt may carry. */
export const MAX_RECEIPT_IDS = 1024

export function textByteLength (text: string): number {
  return Buffer.byteLength(text, 'utf8')
}

export function writeEnvelope (env: DmEnvelope): Uint8Array<ArrayBuffer> {
  const receipt = env.type === 'receipt'
  return Envelope.encode({
    id: env.id,
    lamport: env.lamport,
    sentAt: env.sentAt,
    type: receipt ? EnvelopeType.RECEIPT : EnvelopeType.TEXT,
    body: receipt ? ReceiptBody.encode({ ids: [...(env.receiptFor ?? [])] }) : TextBody.encode({ text: env.text })
  })
}

/** Decode and validate one envelope frame; throws MalformedFrameError / InvalidEnvelopeError. */
export function readEnvelope (frame: Uint8Array): DmEnvelope {
  let env: Envelope
  let body: TextBody
  try {
    env = Envelope.decode(frame)
  } catch (err) {
    throw new MalformedFrameError(`envelope does not decode: ${(err as Error).message}`)
  }
  if (!isMessageId(env.id)) throw new InvalidEnvelopeError('envelope id is not a ULID')
  if (!Number.isSafeInteger(env.lamport) || env.lamport < 1) throw new InvalidEnvelopeError('envelope lamport must be a positive integer')
  if (!Number.isSafeInteger(env.sentAt) || env.sentAt < 0) throw new InvalidEnvelopeError('envelope sentAt must be a timestamp')
  if (env.type === EnvelopeType.RECEIPT) {
    let receipt: ReceiptBody
    try {
      receipt = ReceiptBody.decode(env.body, { limits: { ids: MAX_RECEIPT_IDS } })
    } catch (err) {
      throw new MalformedFrameError(`receipt body does not decode: ${(err as Error).message}`)
    }
    if (receipt.ids.length === 0 || !receipt.ids.every(isMessageId)) throw new InvalidEnvelopeError('receipt ids must be ULIDs')
    return { id: env.id, lamport: env.lamport, sentAt: env.sentAt, type: 'receipt', text: '', receiptFor: receipt.ids }
  }
  if (env.type !== EnvelopeType.TEXT) throw new InvalidEnvelopeError(`unsupported envelope type ${String(env.type)}`)
  if (env.body.byteLength > MAX_TEXT_BYTES + 16) throw new InvalidEnvelopeError('text body too large')
  try {
    body = TextBody.decode(env.body)
  } catch (err) {
    throw new MalformedFrameError(`text body does not decode: ${(err as Error).message}`)
  }
  if (textByteLength(body.text) > MAX_TEXT_BYTES) throw new InvalidEnvelopeError(`text over ${MAX_TEXT_BYTES} bytes`)
  return { id: env.id, lamport: env.lamport, sentAt: env.sentAt, type: 'text', text: body.text }
}

export function writeAck (ids: readonly MessageId[]): Uint8Array {
  return Ack.encode({ ids: [...ids] })
}

export function readAck (frame: Uint8Array): MessageId[] {
  let ack: Ack
  try {
    ack = Ack.decode(frame, { limits: { ids: MAX_ACK_IDS } })
  } catch (err) {
    throw new MalformedFrameError(`ack does not decode: ${(err as Error).message}`)
  }
  for (const id of ack.ids) {
    if (!isMessageId(id)) throw new MalformedFrameError('ack carries an id that is not a ULID')
  }
  return ack.ids as MessageId[]
}
