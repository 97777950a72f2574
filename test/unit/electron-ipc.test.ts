import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { ParleyBridge } from '../../core/api/bridge.js'
import type { Response } from '../../core/api/contract.js'
import { MAX_REQUEST_BYTES } from '../../core/api/request.js'
import { localBackend } from '../../app/electron/core-host.js'
import { EVENT_CHANNEL, REQUEST_CHANNEL, wireIpc, type InvokeEventLike } from '../../app/electron/ipc.js'
import { isRendererUrl, RENDERER_URL } from '../../app/electron/security.js'
import { askIpc, FakeIpcMain, FakeWebContents, fromRenderer } from '../helpers/electron-fakes.js'
import { eventually, removeDir, startPeer, type TestPeer } from '../helpers/messengers.js'

// ipcMain and webContents are fakes (test/helpers/electron-fakes.ts: no Electron binary
// here). What runs behind them is real: the shared dispatcher over a started Messenger
// (libp2p on loopback, level store), the very code the desktop app runs in its core process
// (localBackend; the process boundary is tested in electron-core-process.test.ts).
const ask = askIpc

void describe('Electron IPC wiring over the shared dispatcher', () => {
  let ada: TestPeer
  let bob: TestPeer
  let ipc: FakeIpcMain
  let page: FakeWebContents
  let forwarded: string[]
  let unwire: () => void

  before(async () => {
    ada = await startPeer({ name: 'Ada' })
    bob = await startPeer({ name: 'Bob' })
    ipc = new FakeIpcMain()
    page = new FakeWebContents(7)
    forwarded = []
    const real = localBackend(ada.m)
    const backend: ParleyBridge = {
      request: async (frame) => {
        forwarded.push(frame)
        return await real.request(frame)
      },
      onEvent: (l) => real.onEvent(l)
    }
    unwire = wireIpc({ ipcMain: ipc, webContents: page, isTrustedUrl: isRendererUrl, backend })
  })

  after(async () => {
    unwire()
    await Promise.all([ada.stop(), bob.stop()])
    await Promise.all([removeDir(ada.dir), removeDir(bob.dir)])
  })

  void it('answers a request frame with its response frame, as the WebSocket does', async () => {
    const r = await ask(ipc, fromRenderer(page), JSON.stringify({ id: 1, cmd: 'whoami' }))
    assert.equal(r.id, 1)
    assert.ok(r.ok)
    assert.equal((r.result as { peerId: string }).peerId, ada.m.whoami().peerId)

    const named = await ask(ipc, fromRenderer(page, `${RENDERER_URL}#/chats`), JSON.stringify({ id: 'n', cmd: 'name.set', name: 'Ada L.' }))
    assert.ok(named.ok, JSON.stringify(named))
    assert.equal(ada.m.whoami().name, 'Ada L.')
  })

  void it('refuses bad frames with the same named errors as every transport; non-text and oversized ones never reach core', async () => {
    const before = forwarded.length
    const cases: Array<[unknown, string, Response['id']]> = [
      [42, 'InvalidRequestError', null],
      [{ id: 1, cmd: 'whoami' }, 'InvalidRequestError', null], // an object, not its JSON text
      [JSON.stringify({ id: 3, cmd: 'x'.repeat(MAX_REQUEST_BYTES) }), 'InvalidRequestError', null]
    ]
    for (const [frame, name, id] of cases) {
      const r = await ask(ipc, fromRenderer(page), frame)
      assert.equal(r.ok, false)
      assert.equal(r.id, id)
      if (!r.ok) assert.equal(r.error.name, name, r.error.message)
    }
    assert.equal(forwarded.length, before, 'nothing was passed on to core')

    const refused: Array<[string, string, Response['id']]> = [
      ['{not json', 'InvalidRequestError', null],
      ['[1,2]', 'InvalidRequestError', null],
      [JSON.stringify({ id: 9, cmd: 'fs.read' }), 'UnknownCommandError', 9],
      [JSON.stringify({ id: 10, cmd: 'dm.send', to: 'nobody' }), 'InvalidRequestError', 10]
    ]
    for (const [frame, name, id] of refused) {
      const r = await ask(ipc, fromRenderer(page), frame)
      assert.deepEqual([r.id, r.ok, !r.ok && r.error.name], [id, false, name], frame)
    }
  })

  void it('serves only our window\'s top frame showing the renderer: other pages, subframes and foreign URLs are refused', async () => {
    const before = forwarded.length
    const frame = JSON.stringify({ id: 1, cmd: 'whoami' })
    const refused: Array<[string, InvokeEventLike]> = [
      ['another webContents', { sender: { id: 8 }, senderFrame: { url: RENDERER_URL, parent: null } }],
      ['a subframe', { sender: { id: page.id }, senderFrame: { url: RENDERER_URL, parent: {} } }],
      ['a frame that is gone', { sender: { id: page.id }, senderFrame: null }],
      ['a web page', fromRenderer(page, 'https://evil.example/index.html')],
      ['a file', fromRenderer(page, 'file:///tmp/index.html')],
      ['another host on our scheme', fromRenderer(page, 'parley://evil/index.html')],
      ['userinfo tricks', fromRenderer(page, 'parley://app@evil/index.html')],
      ['not a URL', fromRenderer(page, 'about:blank')]
    ]
    for (const [what, event] of refused) {
      await assert.rejects(ipc.invoke(REQUEST_CHANNEL, event, frame), { name: 'ForbiddenSenderError' }, what)
    }
    page.destroyed = true
    await assert.rejects(ipc.invoke(REQUEST_CHANNEL, fromRenderer(page), frame), { name: 'ForbiddenSenderError' }, 'a destroyed page')
    page.destroyed = false
    assert.equal(forwarded.length, before, 'nothing reached core')
  })

  void it('forwards Messenger events to the page as frames: a message from a contact arrives live', async () => {
    const invite = ada.m.whoami().invite
    const added = await ask(ipc, fromRenderer(page), JSON.stringify({ id: 'c', cmd: 'contact.add', invite: bob.m.whoami().invite, name: 'Bob' }))
    assert.ok(added.ok, JSON.stringify(added))
    await bob.m.addContact(invite)
    const sent = await bob.m.sendText(ada.m.peerId, 'hello over IPC')
    await eventually(() => page.frames().some((f) => f.event === 'message' && f.id === sent.id), 'the message event reached the page')
    const message = page.frames().find((f) => f.event === 'message' && f.id === sent.id)
    assert.equal(message?.text, 'hello over IPC')
    assert.equal(message?.from, bob.m.peerId)
    assert.ok(page.sent.every((s) => s.channel === EVENT_CHANNEL && s.args.length === 1 && typeof s.args[0] === 'string'), 'only event frames, as text')

    const history = await ask(ipc, fromRenderer(page), JSON.stringify({ id: 'h', cmd: 'dm.history', with: bob.m.peerId }))
    assert.ok(history.ok)
    assert.ok((history.result as { messages: Array<{ id: string }> }).messages.some((m) => m.id === sent.id))
  })

  void it('sends nothing to a destroyed page, and nothing at all once unwired (the handler is gone too)', async () => {
    page.destroyed = true
    const count = page.sent.length
    await ada.m.setName('Ada while hidden')
    await bob.m.sendText(ada.m.peerId, 'to a closed page')
    await eventually(async () => (await ada.m.history(bob.m.peerId, 50)).some((m) => m.text === 'to a closed page'), 'stored')
    assert.equal(page.sent.length, count)
    page.destroyed = false

    const ipc2 = new FakeIpcMain()
    const page2 = new FakeWebContents(11)
    const off = wireIpc({ ipcMain: ipc2, webContents: page2, isTrustedUrl: isRendererUrl, backend: localBackend(ada.m) })
    assert.equal((await ask(ipc2, fromRenderer(page2), '{"id":1,"cmd":"whoami"}')).ok, true)
    off()
    off() // idempotent
    assert.equal(ipc2.handlers.size, 0)
    await assert.rejects(ipc2.invoke(REQUEST_CHANNEL, fromRenderer(page2), '{"id":1,"cmd":"whoami"}'), /No handler/)
    await bob.m.sendText(ada.m.peerId, 'after unwiring')
    await eventually(async () => (await ada.m.history(bob.m.peerId, 50)).some((m) => m.text === 'after unwiring'), 'stored')
    assert.equal(page2.sent.length, 0)
  })
})
