import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'

/** The YamuxStream fields the window-update rule reads (private in the library's types). */
interface WindowState {
  state: StreamState
  recvWindow: number
  recvWindowCapacity: number
}

let installed = false

/**
 * Yamux sends a WINDOW_UPDATE when half of a stream's receive window is used, as hashicorp,
 * go and rust yamux do (rust-yamux #100), instead of after every data frame received, which
 * is what @chainsafe/libp2p-yamux 8 does. Gossip is many small frames on long-lived streams,
 * so that rule doubled the frames (each one Noise-encrypted and a socket write on one side, a
 * read and a decrypt on the other): in a group of 10 on loopback, 47% of all socket writes were
 * window updates. Frames that carry a flag (SYN, ACK) or leave a paused stream still go through
 * the library's own method unchanged; so does every update once the window is half used, so
 * a sender is never left without credit (it stops only at zero credit, long after we told it
 * more). Installed once per process by createNode; idempotent.
 *
 * @example
 * lazyYamuxWindowUpdates()
 * const node = await createLibp2p({ streamMuxers: [yamux()], ... })
 */
export function lazyYamuxWindowUpdates (): void {
  if (installed) return
  installed = true
  const proto = YamuxStream.prototype
  const original: unknown = Object.getOwnPropertyDescriptor(proto, 'sendWindowUpdate')?.value
  if (typeof original !== 'function') throw new Error('@chainsafe/libp2p-yamux: YamuxStream.sendWindowUpdate is gone; see core/net/yamux-window.ts')
  proto.sendWindowUpdate = function (this: YamuxStream): void {
    const s = this as unknown as WindowState
    const flagless = s.state === StreamState.SYNSent || s.state === StreamState.Established || s.state === StreamState.Finished
    if (flagless && s.recvWindowCapacity > s.recvWindow / 2) return
    original.call(this)
  }
}
