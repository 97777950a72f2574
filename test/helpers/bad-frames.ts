/**
 * Hostile input for the request/response protocols' bad-input tests: raw bytes written on a
 * fresh stream, and how that stream ended.
 *
 * @example
 * const outcome = await attackStream(raw, relayId, MAILBOX_PROTOCOL, bytes, true, MAX_RESPONSE, (f) => MailboxResponse.decode(f))
 * assert.match(outcome, RESET) // or 'answer:InvalidRequestError' when the bytes formed a request
 */
import { createHash } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p } from '@libp2p/interface'
import { FrameDecoder } from '../../core/protocols/framing.js'

/** How a reset stream's error reads on the attacker's side. */
export const RESET = /Reset|reset|Abort/

/**
 * Write `bytes` to `peer` on `protocol`, optionally close our end, and report how the stream
 * ended: the error's name on a reset, `answer:<errorName|ok>` if the peer answered, else
 * the stream status.
 */
export async function attackStream (
  from: Pick<Libp2p, 'dialProtocol'>,
  peer: string,
  protocol: string,
  bytes: Uint8Array,
  closeWrite: boolean,
  maxResponseBytes: number,
  decode: (frame: Uint8Array) => { ok: boolean, errorName: string }
): Promise<string> {
  const s = await from.dialProtocol(peerIdFromString(peer), protocol)
  const decoder = new FrameDecoder(maxResponseBytes)
  try {
    if (!s.send(bytes)) await s.onDrain()
    if (closeWrite) await s.close()
    for await (const chunk of s) {
      for (const frame of decoder.push(chunk)) {
        const res = decode(frame)
        s.abort(new Error('answered'))
        return `answer:${res.ok ? 'ok' : res.errorName}`
      }
    }
    return decoder.buffered > 0 ? 'partial answer' : s.status
  } catch (err) {
    return (err as Error).name
  }
}

/** `n` as a protobuf varint (a length prefix). */
export function varint (n: number): Uint8Array {
  const out: number[] = []
  while (n >= 0x80) { out.push((n & 0x7f) | 0x80); n = Math.floor(n / 128) }
  out.push(n)
  return Uint8Array.from(out)
}

/** Deterministic "random" bytes (SHA-256 in counter mode), so a run is repeatable. */
export function pseudoRandomBytes (seed: string, length: number): Uint8Array {
  const bytes = new Uint8Array(length)
  for (let i = 0; i < length; i += 32) {
    bytes.set(createHash('sha256').update(`${seed} ${i}`).digest().subarray(0, length - i), i)
  }
  return bytes
}
