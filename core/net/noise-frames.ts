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
 * `encrypt` result into one buffer (a copy of a few hundred bytes, or one 64 KiB frame at
 * most per Noise frame), so every frame, and every run of frames encrypted together, is one
 * write. Applied per connection by wrapping the encrypter's factory; the stream's own
 * `encrypt` is checked for when a connection is secured, and its absence is an error, so a
 * Noise upgrade that renames it fails loudly in tests instead of quietly.
 *
 * @example
 * const node = await createLibp2p({ connectionEncrypters: [singleWriteFrames(noise())], ... })
 */
export function singleWriteFrames<C> (factory: (components: C) => ConnectionEncrypter): (components: C) => ConnectionEncrypter {
  return (components) => {
    const encrypter = factory(components)
    const inbound = encrypter.secureInbound.bind(encrypter)
    const outbound = encrypter.secureOutbound.bind(encrypter)
    encrypter.secureInbound = async (connection: MessageStream, options?: SecureConnectionOptions): Promise<SecuredConnection> =>
      joinFrames(await inbound(connection, options))
    encrypter.secureOutbound = async (connection: MessageStream, options?: SecureConnectionOptions): Promise<SecuredConnection> =>
      joinFrames(await outbound(connection, options))
    return encrypter
  }
}

function joinFrames (secured: SecuredConnection): SecuredConnection {
  const stream = secured.connection as unknown as Partial<FrameEncrypter>
  const encrypt = stream.encrypt
  if (typeof encrypt !== 'function') throw new Error('@chainsafe/libp2p-noise: the encrypted stream has no encrypt(); see core/net/noise-frames.ts')
  stream.encrypt = function (this: unknown, chunk: Uint8Array | Uint8ArrayList): Uint8ArrayList {
    // subarray() copies only when the list holds more than one buffer.
    return new Uint8ArrayList(encrypt.call(this, chunk).subarray())
  }
  return secured
}
