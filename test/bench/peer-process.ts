/**
 * A benchmark peer in its own OS process: forked by ProcessPeer (process-peer.ts) with an
 * IPC channel, it hosts one PeerHost and answers CallMessages with PeerMessages. It exits
 * when the harness disconnects (or dies: the channel then closes too), after stopping its
 * libp2p node / Messenger. Its data directory belongs to the harness, which removes it.
 */
import '../../core/polyfill.js'
import { PeerHost, type CallMessage, type PeerMessage, type WireError } from './peer.js'

const host = new PeerHost()
let exiting = false

function post (msg: PeerMessage): void {
  if (process.send === undefined || !process.connected) return
  process.send(msg, (err: Error | null) => {
    if (err !== null && !exiting) console.error('bench peer: IPC send failed:', err)
  })
}

function toWire (err: unknown): WireError {
  if (err instanceof Error) return { name: err.name, message: err.message, ...(err.stack !== undefined ? { stack: err.stack } : {}) }
  return { name: 'Error', message: String(err) }
}

function isCall (msg: unknown): msg is CallMessage {
  if (typeof msg !== 'object' || msg === null) return false
  const m = msg as Partial<CallMessage>
  return m.type === 'call' && typeof m.id === 'number' && host.isMethod(m.method)
}

async function dispatch (msg: CallMessage): Promise<unknown> {
  const handler = host.handlers[msg.method] as (params: unknown) => Promise<unknown>
  return await handler(msg.params)
}

function onMessage (msg: unknown): void {
  if (!isCall(msg)) {
    console.error('bench peer: ignoring unexpected IPC message', msg)
    return
  }
  dispatch(msg).then(
    (result) => { post({ type: 'result', id: msg.id, ok: true, result }) },
    (err: unknown) => { post({ type: 'result', id: msg.id, ok: false, error: toWire(err) }) }
  )
}

function shutdown (code: number): void {
  if (exiting) return
  exiting = true
  // Never hang on the way out: a stuck stop() must not leave an orphan process.
  setTimeout(() => { process.exit(code === 0 ? 1 : code) }, 5000).unref()
  host.stop().then(
    () => { process.exit(code) },
    (err: unknown) => {
      console.error('bench peer: stop failed:', err)
      process.exit(1)
    }
  )
}

if (process.send === undefined) {
  console.error('peer-process.js is started by the benchmark harness (node dist/test/bench/run.js), not by hand')
  process.exit(2)
}

process.on('message', onMessage)
process.on('disconnect', () => { shutdown(0) })
process.on('SIGTERM', () => { shutdown(0) })
process.on('SIGINT', () => { shutdown(130) })
post({ type: 'ready', pid: process.pid })
