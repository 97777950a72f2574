import type { Stream } from '@libp2p/interface'
import { FrameDecoder, sendFrames } from './framing.js'
import { TruncatedFrameError } from './errors.js'

/**
 * One request frame out, one response frame back, on a fresh stream; both bounded. Used by
 * the request/response protocols (mailbox, later directory and prekeys).
 */
export async function requestResponse (stream: Stream, request: Uint8Array, maxResponseBytes: number): Promise<Uint8Array> {
  const decoder = new FrameDecoder(maxResponseBytes)
  await sendFrames(stream, [request])
  await stream.close() // our side is done; the response still arrives
  for await (const chunk of stream) {
    for (const frame of decoder.push(chunk)) return frame
  }
  decoder.end()
  throw new TruncatedFrameError('stream ended before a response')
}

/** Read exactly one request frame from a stream (the listener side). */
export async function readOneFrame (stream: Stream, maxBytes: number): Promise<Uint8Array> {
  const decoder = new FrameDecoder(maxBytes)
  for await (const chunk of stream) {
    for (const frame of decoder.push(chunk)) return frame
  }
  decoder.end()
  throw new TruncatedFrameError('stream ended before a request')
}

/** Write one response frame and close our side. */
export async function writeOneFrame (stream: Stream, frame: Uint8Array): Promise<void> {
  await sendFrames(stream, [frame])
  await stream.close()
}
