import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import type { MessengerEvent } from '../../core/api/contract.js'
import { Messenger, type MessengerOptions } from '../../core/messenger.js'
import { readAck, type AckFrame } from '../../core/protocols/dm/codec.js'
import { DM_PROTOCOL } from '../../core/protocols/dm/constants.js'
import { encodeFrames, FrameDecoder } from '../../core/protocols/framing.js'

/** A Messenger on loopback with a temp data dir, recording every event it emits. */
export interface TestPeer {
  m: Messenger
  dir: string
  events: MessengerEvent[]
  restart(): Promise<void>
  stop(): Promise<void>
}

export async function tempDir (prefix = 'parley-test-'): Promise<string> {
  return await mkdtemp(join(tmpdir(), prefix))
}

export async function startPeer (opts: Partial<MessengerOptions> & { dir?: string } = {}): Promise<TestPeer> {
  const dir = opts.dir ?? await tempDir()
  const events: MessengerEvent[] = []
  const make = (): Messenger => {
    const m = new Messenger({
      dataDir: dir,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      mdns: false,
      inboundConnectionThreshold: 1000,
      outbox: { initialBackoffMs: 100, maxBackoffMs: 1000 },
      ...opts
    })
    m.on((e) => { events.push(e) })
    return m
  }
  const peer: TestPeer = {
    m: make(),
    dir,
    events,
    async restart () {
      await peer.m.stop()
      peer.m = make()
      await peer.m.start()
    },
    async stop () {
      await peer.m.stop()
    }
  }
  await peer.m.start()
  return peer
}

export async function removeDir (dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true })
}

/** Poll until `check` returns true, or fail with `what` after `timeoutMs`. */
export async function eventually (check: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

export function messageEvents (events: MessengerEvent[]): Array<Extract<MessengerEvent, { event: 'message' }>> {
  return events.filter((e): e is Extract<MessengerEvent, { event: 'message' }> => e.event === 'message')
}

export function statusEvents (events: MessengerEvent[], status: string): Array<Extract<MessengerEvent, { event: 'status' }>> {
  return events.filter((e): e is Extract<MessengerEvent, { event: 'status' }> => e.event === 'status' && e.status === status)
}

/** Send sealed frames from `from`'s own node on a fresh DM stream and read the ack. */
export async function sendRaw (from: TestPeer, to: TestPeer, frame: Uint8Array): Promise<AckFrame> {
  const s = await from.m.libp2p.dialProtocol(peerIdFromString(to.m.peerId), DM_PROTOCOL)
  s.send(encodeFrames([frame]))
  const decoder = new FrameDecoder(64 * 1024)
  for await (const chunk of s) {
    for (const f of decoder.push(chunk)) {
      await s.close()
      return readAck(f)
    }
  }
  throw new Error('no ack')
}
