import type { ParleyBridge } from '../../core/api/bridge.js'
import { createDispatcher } from '../../core/api/dispatcher.js'
import { handleRequest } from '../../core/api/request.js'
import { describeError } from '../../core/errors.js'
import type { KeyProtector } from '../../core/identity/key-protector.js'
import { forComponent } from '../../core/logger.js'
import { Messenger, type MessengerOptions } from '../../core/messenger.js'
import { isMessage, notRunningResponse, type CoreStartOptions, type Port } from './core-channel.js'

const log = forComponent('electron:core')

/**
 * MessengerApi in its wire form over a Messenger in this process: request frames in,
 * response frames out, events as frames. What the utility process serves, and what the IPC
 * wiring talks to (through CoreClient) in the main process.
 */
export function localBackend (messenger: Messenger): ParleyBridge {
  const dispatch = createDispatcher(messenger)
  return {
    request: async (frame) => JSON.stringify(await handleRequest(frame, dispatch)),
    onEvent: (listener) => messenger.on((event) => { listener(JSON.stringify(event)) })
  }
}

/**
 * Hosts core in the utility process: on 'start' makes and starts the Messenger (its key
 * protector, if any, asks the main process over `port`), then answers 'request' frames and
 * posts every event; on 'stop' stops it and says 'stopped'. Requests before the Messenger
 * runs are answered with NotRunningError. `makeMessenger` is for tests.
 */
export function serveCore (port: Port, makeMessenger: (options: MessengerOptions) => Messenger = (o) => new Messenger(o)): void {
  let messenger: Messenger | undefined
  let backend: ParleyBridge | undefined
  let stopping: Promise<void> | undefined
  let seq = 0
  const keyCalls = new Map<number, { resolve: (b: Uint8Array) => void, reject: (e: Error) => void }>()

  const keyCall = async (op: 'seal' | 'open', bytes: Uint8Array): Promise<Uint8Array> => {
    const id = ++seq
    const answer = new Promise<Uint8Array>((resolve, reject) => { keyCalls.set(id, { resolve, reject }) })
    port.post({ type: 'key', seq: id, op, bytes })
    return await answer
  }

  const start = async (options: CoreStartOptions): Promise<void> => {
    if (messenger !== undefined) return
    const protector: KeyProtector | undefined = options.protector === undefined
      ? undefined
      : { name: options.protector, seal: async (b) => await keyCall('seal', b), open: async (b) => await keyCall('open', b) }
    const m = makeMessenger({
      dataDir: options.dataDir,
      listen: options.listen,
      relays: options.relays,
      mdns: options.mdns,
      ...(options.name !== undefined ? { name: options.name } : {}),
      keyProtector: protector
    })
    messenger = m
    const b = localBackend(m)
    b.onEvent((frame) => { port.post({ type: 'event', frame }) })
    try {
      await m.start()
    } catch (err) {
      messenger = undefined
      port.post({ type: 'failed', error: describeError(err) })
      return
    }
    backend = b
    port.post({ type: 'started' })
  }

  const request = async (id: number, frame: string): Promise<void> => {
    const response = backend !== undefined && stopping === undefined
      ? await backend.request(frame)
      : await notRunningResponse(frame, 'Parley is not running (starting or stopping)')
    port.post({ type: 'response', seq: id, frame: response })
  }

  const stop = async (): Promise<void> => {
    stopping ??= (async () => {
      try {
        await messenger?.stop()
      } catch (err) {
        log.error('stopping: %e', err)
      }
    })()
    await stopping
    port.post({ type: 'stopped' })
  }

  port.onMessage((message) => {
    if (!isMessage(message)) return
    switch (message.type) {
      case 'start':
        void start(message.options as CoreStartOptions)
        break
      case 'request':
        if (typeof message.seq === 'number' && typeof message.frame === 'string') void request(message.seq, message.frame)
        break
      case 'key-result': {
        const call = typeof message.seq === 'number' ? keyCalls.get(message.seq) : undefined
        if (call === undefined) break
        keyCalls.delete(message.seq as number)
        if (message.ok === true && message.bytes instanceof Uint8Array) call.resolve(message.bytes)
        else call.reject(new Error(typeof message.error === 'string' ? message.error : 'the key protector failed'))
        break
      }
      case 'stop':
        void stop()
        break
      default:
        log('unknown message from the main process: %s', message.type.slice(0, 40))
    }
  })
}
