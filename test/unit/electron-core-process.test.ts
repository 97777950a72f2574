import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { MessageChannel, type MessagePort } from 'node:worker_threads'
import type { ParleyBridge } from '../../core/api/bridge.js'
import { IDENTITY_FILE } from '../../core/identity/identity.js'
import { decodeSealed, type KeyProtector } from '../../core/identity/key-protector.js'
import type { CoreStartOptions, FromCore, Port, ToCore } from '../../app/electron/core-channel.js'
import { CoreClient, CoreStartError } from '../../app/electron/core-client.js'
import { serveCore } from '../../app/electron/core-host.js'
import { wireIpc } from '../../app/electron/ipc.js'
import { isRendererUrl } from '../../app/electron/security.js'
import { FakeIpcMain, FakeIpcRenderer, FakeWebContents, loadPreload } from '../helpers/electron-fakes.js'
import { eventually, removeDir, startPeer, tempDir, type TestPeer } from '../helpers/messengers.js'

/*
 * Core's process boundary without Electron: the utility process's side (serveCore, the code
 * core-process.ts runs) and the main process's (CoreClient) over a worker_threads
 * MessageChannel, which clones messages as Electron's utilityProcess channel does. The
 * renderer's end is the real preload over fake ipcRenderer/ipcMain (no Electron binary here):
 * window.parley → IPC wiring → CoreClient → channel → serveCore → a real Messenger.
 */
function portOf (p: MessagePort): Port {
  return {
    post: (message: ToCore | FromCore) => { p.postMessage(message) },
    onMessage: (listener) => { p.on('message', (data: unknown) => { listener(data) }) }
  }
}

interface Hosted { client: CoreClient, close: () => void }

function host (protector?: KeyProtector): Hosted {
  const { port1, port2 } = new MessageChannel()
  serveCore(portOf(port1))
  const client = new CoreClient(portOf(port2), protector)
  return { client, close: () => { port1.close(); port2.close() } }
}

function options (dataDir: string, protector?: string): CoreStartOptions {
  return { dataDir, listen: ['/ip4/127.0.0.1/tcp/0'], relays: [], mdns: false, name: 'Ada', ...(protector !== undefined ? { protector } : {}) }
}

/** A stand-in for safeStorage in the main process: XOR plus a marker. */
const xorProtector: KeyProtector & { calls: string[] } = {
  name: 'test-safeStorage',
  calls: [],
  async seal (plain) { this.calls.push('seal'); return Uint8Array.from([0xee, ...plain.map((b) => b ^ 0x42)]) },
  async open (sealed) {
    this.calls.push('open')
    if (sealed[0] !== 0xee) throw new Error('not ours')
    return Uint8Array.from(sealed.subarray(1), (b) => b ^ 0x42)
  }
}

async function call (bridge: ParleyBridge, frame: object): Promise<Record<string, unknown>> {
  return JSON.parse(await bridge.request(JSON.stringify(frame))) as Record<string, unknown>
}

void describe('Electron: core in its own process, reached from window.parley', () => {
  let dir: string
  let hosted: Hosted
  let bob: TestPeer

  before(async () => {
    dir = await tempDir('parley-core-process-')
    bob = await startPeer({ name: 'Bob' })
  })

  after(async () => {
    await hosted.client.stop(10_000)
    hosted.close()
    await bob.stop()
    await Promise.all([removeDir(dir), removeDir(bob.dir)])
  })

  void it('answers NotRunningError (with the request id) before core has started', async () => {
    hosted = host(xorProtector)
    const r = await call(hosted.client, { id: 'early', cmd: 'whoami' })
    assert.deepEqual([r.id, r.ok, (r.error as { name: string }).name], ['early', false, 'NotRunningError'])
  })

  void it('starts the Messenger there; the identity keys are sealed by the main process\'s protector', async () => {
    await hosted.client.start(options(dir, xorProtector.name))
    // Two long-term keys, each sealed once: the libp2p key file and the Signal identity key pair (in the store).
    assert.deepEqual(xorProtector.calls, ['seal', 'seal'])
    const sealed = decodeSealed(await readFile(join(dir, IDENTITY_FILE)))
    assert.equal(sealed?.protector, 'test-safeStorage')
  })

  void it('carries requests and events end to end: preload bridge → IPC wiring → CoreClient → serveCore → Messenger', async () => {
    const ipcMain = new FakeIpcMain()
    const page = new FakeWebContents(3)
    const renderer = new FakeIpcRenderer()
    renderer.connect(ipcMain, page)
    const unwire = wireIpc({ ipcMain, webContents: page, isTrustedUrl: isRendererUrl, backend: hosted.client })
    try {
      const { exposed } = loadPreload(renderer)
      const parley = exposed[0]?.[1] as ParleyBridge
      const me = await call(parley, { id: 1, cmd: 'whoami' })
      assert.equal(me.ok, true, JSON.stringify(me))
      const { peerId, invite, name } = me.result as { peerId: string, invite: string, name: string }
      assert.equal(name, 'Ada')

      const events: Array<Record<string, unknown>> = []
      const off = parley.onEvent((frame) => { events.push(JSON.parse(frame) as Record<string, unknown>) })
      assert.equal((await call(parley, { id: 2, cmd: 'contact.add', invite: bob.m.whoami().invite, name: 'Bob' })).ok, true)
      await bob.m.addContact(invite)
      const sent = await bob.m.sendText(peerId, 'through two processes')
      await eventually(() => events.some((e) => e.event === 'message' && e.id === sent.id), 'the message reached window.parley')
      assert.equal(events.find((e) => e.id === sent.id)?.text, 'through two processes')
      off()

      const unknown = await call(parley, { id: 3, cmd: 'nope' })
      assert.deepEqual([unknown.id, unknown.ok, (unknown.error as { name: string }).name], [3, false, 'UnknownCommandError'])
    } finally {
      unwire()
    }
  })

  void it('a second core on the same data dir fails to start with the Messenger\'s error', async () => {
    const second = host(xorProtector)
    try {
      await assert.rejects(second.client.start(options(dir, xorProtector.name)), (err: unknown) => {
        assert.ok(err instanceof CoreStartError)
        assert.equal(err.error.name, 'DataDirLockedError', err.message)
        return true
      })
    } finally {
      second.close()
    }
  })

  void it('a sealed key with no protector in the main process: start fails with SealedKeyError', async () => {
    const other = await tempDir('parley-core-sealed-')
    const first = host(xorProtector)
    const noProtector = host(undefined)
    try {
      await first.client.start(options(other, xorProtector.name))
      await first.client.stop(10_000)
      // The main process says it has the protector but cannot open the key (keychain gone).
      await assert.rejects(noProtector.client.start(options(other, xorProtector.name)), (err: unknown) => {
        assert.ok(err instanceof CoreStartError)
        assert.equal(err.error.name, 'SealedKeyError', err.message)
        assert.match(err.message, /no key protector in the main process/)
        return true
      })
    } finally {
      first.close()
      noProtector.close()
      await removeDir(other)
    }
  })

  void it('when the core process dies, requests waiting and later ones get NotRunningError frames, never a hang', async () => {
    const { port1, port2 } = new MessageChannel()
    const client = new CoreClient(portOf(port2), undefined)
    port1.on('message', () => {}) // a core that never answers
    const waiting = client.request('{"id":"w","cmd":"whoami"}')
    client.exited(1)
    const r = JSON.parse(await waiting) as Record<string, unknown>
    assert.deepEqual([r.id, r.ok, (r.error as { name: string }).name], ['w', false, 'NotRunningError'])
    const later = JSON.parse(await client.request('{"id":7,"cmd":"whoami"}')) as Record<string, unknown>
    assert.deepEqual([later.id, (later.error as { name: string }).name], [7, 'NotRunningError'])
    await assert.rejects(client.start(options(dir)), { name: 'NotRunningError' })
    await client.stop(10) // nothing to stop: returns at once
    port1.close()
    port2.close()
  })

  void it('stop stops the Messenger; requests after it get NotRunningError', async () => {
    await hosted.client.stop(10_000)
    const r = await call(hosted.client, { id: 'late', cmd: 'whoami' })
    assert.deepEqual([r.id, (r.error as { name: string }).name], ['late', 'NotRunningError'])
  })
})
