import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { MessengerEvent } from '../../core/api/contract.js'
import { IDENTITY_FILE, loadOrCreateIdentity, peerIdString } from '../../core/identity/identity.js'
import { decodeSealed } from '../../core/identity/key-protector.js'
import { ELECTRON_INSTALL_HINT, locateElectron, type LocateOptions } from '../../app/electron/locate.js'
import { MAX_NOTIFICATION_BODY, notificationFor } from '../../app/electron/notify.js'
import { chooseKeyProtector, SAFE_STORAGE_PROTECTOR, type SafeStorageLike } from '../../app/electron/protector.js'
import { CONTENT_SECURITY_POLICY, externalUrl, isAllowedPermission, isRendererUrl, rendererFile, RENDERER_DIR, RENDERER_URL } from '../../app/electron/security.js'
import { electronUnavailableLine } from '../../app/web-shell/cli.js'

// The Electron-free parts of the desktop app's main process (no Electron binary here): each
// takes the Electron API it needs as a small interface, so these tests pass fakes.

void describe('Electron window security', () => {
  let root: string
  let renderer: string
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'parley-renderer-'))
    renderer = join(root, 'renderer')
    await mkdir(join(renderer, 'assets'), { recursive: true })
    await writeFile(join(renderer, 'index.html'), '<!doctype html>')
    await writeFile(join(renderer, 'assets', 'app.js'), 'export {}')
    await writeFile(join(renderer, '.secret'), 'hidden')
    await writeFile(join(root, 'outside.txt'), 'not for the page')
    await symlink(join(root, 'outside.txt'), join(renderer, 'link.txt'))
  })
  after(async () => { await rm(root, { recursive: true, force: true }) })

  void it('trusts only parley://app URLs', () => {
    for (const url of [RENDERER_URL, 'parley://app/', 'parley://app/index.html#/chat/x']) assert.ok(isRendererUrl(url), url)
    for (const url of ['parley://evil/index.html', 'parley://app:1/index.html', 'parley://u@app/', 'file:///index.html', 'https://app/index.html', 'about:blank', '', 'parley:app']) {
      assert.equal(isRendererUrl(url), false, url)
    }
  })

  void it('serves the renderer\'s files and nothing outside them', async () => {
    const index = await rendererFile('parley://app/', renderer)
    assert.ok('file' in index && index.file.endsWith('index.html') && index.contentType.startsWith('text/html'))
    const js = await rendererFile('parley://app/assets/app.js?v=1', renderer)
    assert.ok('file' in js && js.contentType.startsWith('text/javascript'))
    assert.deepEqual(await rendererFile('parley://app/missing.js', renderer), { status: 404 })
    assert.deepEqual(await rendererFile('parley://app/.secret', renderer), { status: 404 })
    assert.deepEqual(await rendererFile('parley://app/link.txt', renderer), { status: 404 }, 'a symlink out of the root')
    assert.deepEqual(await rendererFile('parley://app/assets', renderer), { status: 404 }, 'a directory')
    assert.deepEqual(await rendererFile('parley://app/assets/..%2f..%2foutside.txt', renderer), { status: 400 })
    assert.deepEqual(await rendererFile('parley://evil/index.html', renderer), { status: 400 })
    assert.deepEqual(await rendererFile('parley://app/index.html', join(root, 'no-such-dir')), { status: 404 })
    assert.ok(RENDERER_DIR.replace(/\\/g, '/').endsWith('/dist/renderer/'), RENDERER_DIR)
  })

  void it('has a strict CSP: no inline script, no eval, no network, no plugins or frames', () => {
    assert.doesNotMatch(CONTENT_SECURITY_POLICY, /unsafe-|\*|http:|https:/)
    for (const d of ["default-src 'self'", "script-src 'self'", "connect-src 'none'", "object-src 'none'", "frame-ancestors 'none'", "base-uri 'none'"]) {
      assert.ok(CONTENT_SECURITY_POLICY.includes(d), d)
    }
  })

  void it('allows notifications and no other permission; opens only https links, outside the app', () => {
    assert.ok(isAllowedPermission('notifications'))
    for (const p of ['media', 'geolocation', 'clipboard-read', 'openExternal', 'fullscreen', 'midi', 'pointerLock', 'unknown']) assert.equal(isAllowedPermission(p), false, p)
    assert.equal(externalUrl('https://example.org/a?b'), 'https://example.org/a?b')
    for (const url of ['http://example.org', 'file:///etc/passwd', 'javascript:alert(1)', 'parley://app/', 'smb://host/share', 'not a url']) assert.equal(externalUrl(url), undefined, url)
  })
})

/** A stand-in for safeStorage (reversible, marked), with the backend and availability to report. */
function fakeSafeStorage (available: boolean, backend: string): SafeStorageLike & { calls: number } {
  return {
    calls: 0,
    async isAsyncEncryptionAvailable () { return available },
    getSelectedStorageBackend () { return backend },
    async encryptStringAsync (plain) { this.calls++; return Buffer.from('sealed:' + [...plain].reverse().join('')) },
    async decryptStringAsync (encrypted) {
      const s = encrypted.toString()
      if (!s.startsWith('sealed:')) throw new Error('Error while decrypting the ciphertext provided to safeStorage.decryptString.')
      return { result: [...s.slice(7)].reverse().join(''), shouldReEncrypt: false }
    }
  }
}

void describe('Electron safeStorage policy for the identity key', () => {
  let root: string
  before(async () => { root = await mkdtemp(join(tmpdir(), 'parley-safestorage-')) })
  after(async () => { await rm(root, { recursive: true, force: true }) })

  void it('seals with the OS store (Keychain, DPAPI, libsecret, kwallet); not with Linux\'s basic_text fallback or when unavailable', async () => {
    for (const [platform, backend] of [['darwin', 'unknown'], ['win32', 'unknown'], ['linux', 'gnome_libsecret'], ['linux', 'kwallet6']] as const) {
      const choice = await chooseKeyProtector(fakeSafeStorage(true, backend), platform)
      assert.equal(choice.protector?.name, SAFE_STORAGE_PROTECTOR, `${platform} ${backend}`)
    }
    for (const [available, platform, backend] of [[true, 'linux', 'basic_text'], [true, 'linux', 'unknown'], [false, 'darwin', 'unknown'], [false, 'linux', 'gnome_libsecret']] as const) {
      const choice = await chooseKeyProtector(fakeSafeStorage(available, backend), platform)
      assert.equal(choice.protector, undefined, `${String(available)} ${platform} ${backend}`)
      assert.match(choice.reason, /0600 file/)
    }
  })

  void it('the safeStorage protector seals the identity key file so that only safeStorage opens it', async () => {
    const dataDir = join(root, 'data')
    const ss = fakeSafeStorage(true, 'gnome_libsecret')
    const { protector } = await chooseKeyProtector(ss, 'linux')
    const key = await loadOrCreateIdentity(dataDir, { protector })
    const onDisk = await readFile(join(dataDir, IDENTITY_FILE))
    assert.equal(decodeSealed(onDisk)?.protector, SAFE_STORAGE_PROTECTOR)
    assert.equal(ss.calls, 1)
    assert.equal(peerIdString(await loadOrCreateIdentity(dataDir, { protector })), peerIdString(key))
    await assert.rejects(loadOrCreateIdentity(dataDir), { name: 'SealedKeyError' })
  })
})

void describe('Electron notifications', () => {
  const names = {
    contact: (id: string) => (id === 'PEER-BOB-1234567890' ? 'Bob' : undefined),
    group: (id: string) => (id === 'g1' ? 'Climbers' : undefined)
  }
  void it('notifies incoming messages and group invites with names, and nothing else', () => {
    const message: MessengerEvent = { event: 'message', conversation: 'PEER-BOB-1234567890', from: 'PEER-BOB-1234567890', id: 'm1', text: 'hi\n\nthere', sentAt: 1, lamport: 1 }
    assert.deepEqual(notificationFor(message, names), { title: 'Bob', body: 'hi there', conversation: 'PEER-BOB-1234567890' })
    const group: MessengerEvent = { event: 'group.message', group: 'g1', from: '12D3KooWUnknownPeerXYZ', id: 'm2', text: 'x'.repeat(500), sentAt: 1, lamport: 1 }
    const g = notificationFor(group, names)
    assert.equal(g?.title, '12D3…eerXYZ in Climbers')
    assert.equal([...(g?.body ?? '')].length, MAX_NOTIFICATION_BODY)
    assert.ok(g?.body.endsWith('…'))
    assert.equal(notificationFor({ event: 'group.invite', group: 'g2', name: 'Book club', from: 'PEER-BOB-1234567890' }, names)?.body, 'added you to the group Book club')
    const quiet: MessengerEvent[] = [
      { event: 'status', id: 'm1', conversation: 'c', status: 'delivered' },
      { event: 'peer', peerId: 'p', connected: true },
      { event: 'group.updated', group: 'g1' }
    ]
    for (const e of quiet) assert.equal(notificationFor(e, names), undefined, e.event)
  })
})

void describe('npm start: finding the Electron binary without downloading it', () => {
  const files = (present: Record<string, string>): Pick<LocateOptions, 'exists' | 'readText'> => ({
    exists: (p) => Object.hasOwn(present, p),
    readText: (p) => present[p]
  })
  const pkg = join('/nm', 'electron')

  void it('finds the binary the package\'s path.txt names, under dist/', () => {
    const found = locateElectron({ packageDir: pkg, env: {}, ...files({ [join(pkg, 'path.txt')]: 'electron\n', [join(pkg, 'dist', 'electron')]: '' }) })
    assert.deepEqual(found, { found: true, path: join(pkg, 'dist', 'electron') })
  })

  void it('honours ELECTRON_OVERRIDE_DIST_PATH as the package does', () => {
    const env = { ELECTRON_OVERRIDE_DIST_PATH: '/opt/electron' }
    assert.deepEqual(locateElectron({ packageDir: pkg, env, ...files({ [join('/opt/electron', 'electron')]: '' }) }), { found: true, path: join('/opt/electron', 'electron') })
    const missing = locateElectron({ packageDir: pkg, env, ...files({}) })
    assert.equal(missing.found, false)
  })

  void it('falls back (with a reason) when the package, its path.txt or the binary is missing', () => {
    const cases: LocateOptions[] = [
      { packageDir: undefined, env: {}, ...files({}) },
      { packageDir: pkg, env: {}, ...files({}) }, // installed with the binary left to install-electron
      { packageDir: pkg, env: {}, ...files({ [join(pkg, 'path.txt')]: '' }) },
      { packageDir: pkg, env: {}, ...files({ [join(pkg, 'path.txt')]: 'electron' }) }, // dist/ deleted
      { packageDir: pkg, env: { ELECTRON_OVERRIDE_DIST_PATH: '' }, ...files({}) }
    ]
    for (const c of cases) {
      const r = locateElectron(c)
      assert.equal(r.found, false, JSON.stringify(c))
      if (!r.found) assert.ok(r.reason.length > 0)
    }
  })

  void it('here (no binary installed, nothing downloaded): not found; the one line says so and how to get it', () => {
    const started = Date.now()
    const here = locateElectron()
    assert.ok(Date.now() - started < 1000, 'no download attempt')
    if (here.found) return // a machine with the binary installed: nothing to check
    const line = electronUnavailableLine(here.reason, 'http://127.0.0.1:1/#token=t')
    assert.equal(line.split('\n').length, 1)
    assert.ok(line.includes(ELECTRON_INSTALL_HINT) && line.includes('npx install-electron'))
    assert.ok(line.endsWith('starting the web shell instead: http://127.0.0.1:1/#token=t'))
  })
})
