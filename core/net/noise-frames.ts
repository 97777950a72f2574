import type { ConnectionEncrypter, MessageStream, SecureConnectionOptions, SecuredConnection } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'

/** What this reads of @chainsafe/libp2p-noise's encrypted stream (a method its types do not export). */
interface FrameEncrypter {
  encrypt: (chunk: Uint8Array | Uint8ArrayList) => Uint8ArrayList
}

/**
 * Noise's encrypted stream hands each frame to the transport as two buffers, the 2-byte length
 * and the ciphertext, and @libp2p/tcp writes every buffer with its own `socket.write`: two
 * syscalls (and, with Nagle off, two TCP segments) per frame. In the 50-member group bench
 * socket writes were the largest single item of CPU (13% of all samples). This joins each
 * `encrypt` result of up to JOIN_MAX_BYTES into one buffer (a copy of a few hundred bytes for
 * a gossip RPC or a DM), so each such frame is one write; bulk data (mailbox fetches, group
 * catch-up chunks) is written as before, where one more syscall per 64 KiB frame is noise.
 * Applied per connection by wrapping the encrypter's factory; the stream's own `encrypt` is
 * checked for when a connection is secured, and its absence is an error, so a Noise upgrade
 * that renames it fails loudly in tests instead of quietly.
 *
 * @example
 * const node = await createLibp2p({ connectionEncrypters: [singleWriteFrames(noise())], ... })
 */
export function singleWriteFrames<C> (factory: (components: C) => ConnectionEncrypter): (components: C) => ConnectionEncrypter {
  return eachSecured(factory, joinFrames)
}

/**
 * Noise reads frames with libp2p's LengthPrefixedDecoder, which learns that the bytes it has
 * hold no further frame by calling the length decoder until it throws a RangeError, so every
 * chunk read from a socket ended in a thrown and caught exception (stack trace included). In
 * the 50-member group bench that length decoder was 4.2% of the member processes' CPU. This
 * gives each Noise stream `noiseFrameLength`, which answers "a frame of the largest size"
 * while fewer than 2 bytes are buffered: the decoder then waits for more without an exception.
 * Checked for when a connection is secured, like `encrypt` above.
 *
 * @example
 * const node = await createLibp2p({ connectionEncrypters: [quietFrameLengths(singleWriteFrames(noise()))], ... })
 */
export function quietFrameLengths<C> (factory: (components: C) => ConnectionEncrypter): (components: C) => ConnectionEncrypter {
  return eachSecured(factory, quietLengths)
}

/** The largest Noise frame: what noiseFrameLength reports while the length itself is not all there. */
export const NOISE_MAX_FRAME = 0xffff

/** A Noise frame's length (2 bytes, big-endian) at the start of `data`; NOISE_MAX_FRAME if fewer than 2 bytes are there. */
export function noiseFrameLength (data: Uint8Array | Uint8ArrayList): number {
  if (data.byteLength < 2) return NOISE_MAX_FRAME
  if (data instanceof Uint8Array) return ((data[0] as number) << 8) | (data[1] as number)
  return (data.get(0) << 8) | data.get(1)
}

function eachSecured<C> (factory: (components: C) => ConnectionEncrypter, tweak: (secured: SecuredConnection) => SecuredConnection): (components: C) => ConnectionEncrypter {
  return (components) => {
    const encrypter = factory(components)
    const inbound = encrypter.secureInbound.bind(encrypter)
    const outbound = encrypter.secureOutbound.bind(encrypter)
    encrypter.secureInbound = async (connection: MessageStream, options?: SecureConnectionOptions): Promise<SecuredConnection> =>
      tweak(await inbound(connection, options))
    encrypter.secureOutbound = async (connection: MessageStream, options?: SecureConnectionOptions): Promise<SecuredConnection> =>
      tweak(await outbound(connection, options))
    return encrypter
  }
}

/** What this changes in @chainsafe/libp2p-noise's encrypted stream: its frame decoder (not in its types). */
interface FrameDecoding {
  decoder: { lengthDecoder: (data: Uint8Array | Uint8ArrayList) => number }
}

function quietLengths (secured: SecuredConnection): SecuredConnection {
  const decoder = (secured.connection as unknown as Partial<FrameDecoding>).decoder
  if (typeof decoder?.lengthDecoder !== 'function') throw new Error('@chainsafe/libp2p-noise: the encrypted stream has no decoder.lengthDecoder; see core/net/noise-frames.ts')
  decoder.lengthDecoder = noiseFrameLength
  return secured
}

/** Frames up to this size (after encryption) are joined; larger ones are written as Noise made them. */
export const JOIN_MAX_BYTES = 16 * 1024

function joinFrames (secured: SecuredConnection): SecuredConnection {
  const stream = secured.connection as unknown as Partial<FrameEncrypter>
  const encrypt = stream.encrypt
  if (typeof encrypt !== 'function') throw new Error('@chainsafe/libp2p-noise: the encrypted stream has no encrypt(); see core/net/noise-frames.ts')
  stream.encrypt = function (this: unknown, chunk: Uint8Array | Uint8ArrayList): Uint8ArrayList {
    const frames = encrypt.call(this, chunk)
    // Bulk data is left as it is: there the copy would cost more than the write it saves.
    return frames.byteLength > JOIN_MAX_BYTES ? frames : new Uint8ArrayList(frames.subarray())
  }
  return secured
}
