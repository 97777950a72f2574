import { peerIdFromString } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { ParleyError } from '../errors.js'
import type { PeerIdString } from '../ids.js'

/** Domain separation: this signature can never be mistaken for any other libp2p signature. */
const BINDING_DOMAIN = new TextEncoder().encode('parley/signal-identity-binding/v1\n')

/**
 * A Signal identity key that is not signed by the libp2p key of the peer that claims it
 * (a relay or a man in the middle swapped the keys), or a signature that does not parse.
 */
export class BindingError extends ParleyError {
  static override name = 'BindingError'
  override name = 'BindingError'
}

function bindingMessage (signalIdentityKey: Uint8Array): Uint8Array {
  const msg = new Uint8Array(BINDING_DOMAIN.byteLength + signalIdentityKey.byteLength)
  msg.set(BINDING_DOMAIN, 0)
  msg.set(signalIdentityKey, BINDING_DOMAIN.byteLength)
  return msg
}

/**
 * The peer's libp2p (Ed25519) key signs its Signal identity public key (serialized, 33
 * bytes). The peer id is the address people know; this ties the Signal identity to it.
 *
 * @example
 * const binding = await signBinding(libp2pKey, identityKeyPair.publicKey.serialize())
 * await verifyBinding(peerId, identityKeyPair.publicKey.serialize(), binding) // ok, or throws BindingError
 */
export async function signBinding (libp2pKey: PrivateKey, signalIdentityKey: Uint8Array): Promise<Uint8Array> {
  return await libp2pKey.sign(bindingMessage(signalIdentityKey))
}

/** Throws BindingError unless `signature` is `peer`'s signature over this identity key. */
export async function verifyBinding (peer: PeerIdString, signalIdentityKey: Uint8Array, signature: Uint8Array): Promise<void> {
  const publicKey = peerIdFromString(peer).publicKey
  if (publicKey === undefined) throw new BindingError(`${peer} does not embed a public key`)
  let ok: boolean
  try {
    ok = await publicKey.verify(bindingMessage(signalIdentityKey), signature)
  } catch (err) {
    throw new BindingError(`binding signature does not parse: ${(err as Error).message}`)
  }
  if (!ok) throw new BindingError(`the Signal identity key is not signed by ${peer}`)
}
