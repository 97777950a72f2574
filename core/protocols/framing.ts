import { Uint8ArrayList } from 'uint8arraylist'
import type { MessageStream } from '@libp2p/interface'
import { FrameTooLargeError, InvalidLengthPrefixError, TruncatedFrameError } from './errors.js'

const MAX_VARINT_BYTES = 5 // lengths are < 2^32; a longer prefix is hostile

/**
 * Incremental decoder for varint length-prefixed frames with a hard size bound. Every
 * Parley protocol reads through one of these so no peer can make us buffer more than
 * `maxFrameBytes` (+ one chunk) per stream, whatever length it claims.
 *
 * @example
 * const dec = new FrameDecoder(64 * 1024)
 * for (const frame of dec.push(chunk)) handle(frame)
 * dec.end() // throws TruncatedFrameError if a frame was cut off
 */
export class FrameDecoder {
  private readonly buffer = new Uint8ArrayList()
  private pendingLength = -1

  constructor (private readonly maxFrameBytes: number) {}

  /** Feed bytes; yields every complete frame they finish. Throws on a hostile prefix. */
  * push (chunk: Uint8Array | Uint8ArrayList): Generator<Uint8Array> {
    this.buffer.append(chunk)
    while (true) {
      if (this.pendingLength < 0) {
        const prefix = this.readPrefix()
        if (prefix === undefined) return
        this.pendingLength = prefix
      }
      if (this.buffer.byteLength < this.pendingLength) return
      const frame = this.buffer.subarray(0, this.pendingLength)
      this.buffer.consume(this.pendingLength)
      this.pendingLength = -1
      yield frame
    }
  }

  /** Bytes held that do not yet make a whole frame. */
  get buffered (): number {
    return this.buffer.byteLength
  }

  /** Call when the stream ends: a partial frame left over is an error. */
  end (): void {
    if (this.pendingLength >= 0 || this.buffer.byteLength > 0) {
      throw new TruncatedFrameError(`stream ended inside a frame (${this.buffer.byteLength} bytes buffered)`)
    }
  }

  private readPrefix (): number | undefined {
    let value = 0
    let shift = 0
    for (let i = 0; i < MAX_VARINT_BYTES; i++) {
      if (i >= this.buffer.byteLength) return undefined
      const byte = this.buffer.get(i)
      value += (byte & 0x7f) * 2 ** shift
      shift += 7
      if ((byte & 0x80) === 0) {
        if (value > this.maxFrameBytes) {
          throw new FrameTooLargeError(`frame of ${value} bytes exceeds the limit of ${this.maxFrameBytes}`)
        }
        this.buffer.consume(i + 1)
        return value
      }
    }
    throw new InvalidLengthPrefixError(`length prefix longer than ${MAX_VARINT_BYTES} bytes`)
  }
}

/** Length-prefix frames into one buffer, ready for a single `stream.send`. */
export function encodeFrames (frames: readonly Uint8Array[]): Uint8Array {
  let total = 0
  for (const f of frames) total += varintLength(f.byteLength) + f.byteLength
  const out = new Uint8Array(total)
  let offset = 0
  for (const f of frames) {
    let n = f.byteLength
    while (n >= 0x80) {
      out[offset++] = (n & 0x7f) | 0x80
      n = Math.floor(n / 128)
    }
    out[offset++] = n
    out.set(f, offset)
    offset += f.byteLength
  }
  return out
}

function varintLength (n: number): number {
  let len = 1
  while (n >= 0x80) { n = Math.floor(n / 128); len++ }
  return len
}

/**
 * Length-prefix `frames` into one write on `stream`, then wait for the transport to drain
 * if it asked us to. Every protocol writes through this, so backpressure is handled once.
 */
export async function sendFrames (stream: Pick<MessageStream, 'send' | 'onDrain'>, frames: readonly Uint8Array[]): Promise<void> {
  if (!stream.send(encodeFrames(frames))) await stream.onDrain()
}
