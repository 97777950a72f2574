// The Electron main process: the one window showing the renderer, the tray, notifications
// and safeStorage; core (the Messenger) runs in a utility process (core-process.ts) so that
// libp2p, libsignal and level never hold up this thread, which is Chromium's UI thread.
// Process model, security settings and the IPC contract: docs/architecture.md, "Desktop app
// (Electron)". Everything Electron-free lives in the modules it imports, unit tested
// without the Electron binary.
import '../../core/polyfill.js'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { app, BrowserWindow, dialog, ipcMain, Menu, nativeImage, Notification, protocol, safeStorage, shell, Tray, utilityProcess, type UtilityProcess } from 'electron'
import type { ContactView, GroupView, MessengerEvent } from '../../core/api/contract.js'
import { NODE_OPTIONS, nodeArgsFrom } from '../../core/cli/node.js'
import { describeError } from '../../core/errors.js'
import { forComponent } from '../../core/logger.js'
import type { FromCore, ToCore } from './core-channel.js'
import { CoreClient } from './core-client.js'
import { wireIpc } from './ipc.js'
import { notificationFor } from './notify.js'
import { chooseKeyProtector } from './protector.js'
import { APP_SCHEME, CONTENT_SECURITY_POLICY, externalUrl, isAllowedPermission, isRendererUrl, rendererFile, RENDERER_URL } from './security.js'

const log = forComponent('electron')

/** Matches electron-builder.yml's appId (Windows needs it for notifications). */
const APP_ID = 'org.parley.desktop'
const PRELOAD = fileURLToPath(new URL('./preload.cjs', import.meta.url))
const CORE_PROCESS = fileURLToPath(new URL('./core-process.js', import.meta.url))
/** Not compiled: read from the source tree (packaged: app.asar/app/electron/assets). */
const ICON = fileURLToPath(new URL('../../../app/electron/assets/icon.png', import.meta.url))
/** How long quitting waits for core to stop the Messenger (outbox on disk, peers told). */
const STOP_TIMEOUT_MS = 10_000

let win: BrowserWindow | undefined
let tray: Tray | undefined
let core: CoreClient | undefined
let coreProcess: UtilityProcess | undefined
let unwire: (() => void) | undefined
/** Set once the user asked to quit: closing the window then really closes it. */
let quitting = false
let stopped = false

// Before `ready`: our scheme is a standard, secure origin; every renderer is sandboxed.
protocol.registerSchemesAsPrivileged([{ scheme: APP_SCHEME, privileges: { standard: true, secure: true } }])
app.enableSandbox()

if (!app.requestSingleInstanceLock()) {
  // Another Parley owns the data dir: it focuses its window (second-instance) and we leave.
  app.quit()
} else {
  app.setAppUserModelId(APP_ID)
  app.on('second-instance', () => { showWindow() })
  app.on('activate', () => { showWindow() }) // macOS: dock icon clicked
  app.on('window-all-closed', () => { /* stays in the tray; Quit is in the tray menu */ })
  app.on('before-quit', () => { quitting = true })
  app.on('will-quit', (e) => {
    if (stopped) return
    e.preventDefault()
    void shutdown().finally(() => {
      stopped = true
      app.quit()
    })
  })
  process.once('SIGTERM', () => { app.quit() })
  process.once('SIGINT', () => { app.quit() })
  app.whenReady().then(start).catch(async (err: unknown) => { await fatal(err) })
}

async function start (): Promise<void> {
  const argv = process.argv.slice(app.isPackaged ? 1 : 2)
  // `parley start` passes the options of `parley node` through (--relay, --data...); Chromium's
  // own switches may be there too, so unknown ones are ignored.
  const { values } = parseArgs({ args: argv, options: NODE_OPTIONS, strict: false, allowPositionals: true })
  const strings = (v: unknown): string[] | undefined => Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : undefined
  const args = nodeArgsFrom({
    data: typeof values.data === 'string' ? values.data : join(app.getPath('userData'), 'data'),
    listen: strings(values.listen),
    relay: strings(values.relay),
    name: typeof values.name === 'string' ? values.name : undefined,
    'no-mdns': values['no-mdns'] === true
  })
  const choice = await chooseKeyProtector(safeStorage, process.platform)
  log('%s', choice.reason)

  const child = utilityProcess.fork(CORE_PROCESS, [], { serviceName: 'Parley core', stdio: 'inherit' })
  coreProcess = child
  const client = new CoreClient({
    post: (message: ToCore | FromCore) => { child.postMessage(message) },
    onMessage: (listener) => { child.on('message', (message: unknown) => { listener(message) }) }
  }, choice.protector)
  child.once('exit', (code) => {
    coreProcess = undefined
    client.exited(code)
    if (!quitting) void fatal(new Error(`Parley's core process exited unexpectedly (code ${code})`))
  })
  await client.start({
    dataDir: args.dataDir,
    listen: args.listen,
    relays: args.relays,
    mdns: args.mdns,
    ...(args.name !== undefined ? { name: args.name } : {}),
    ...(choice.protector !== undefined ? { protector: choice.protector.name } : {})
  })
  core = client

  serveRenderer()
  const window = createWindow()
  unwire = wireIpc({ ipcMain, webContents: window.webContents, isTrustedUrl: isRendererUrl, backend: client })
  client.onEvent((frame) => { notify(frame).catch((err: unknown) => { log.error('notifying: %e', err) }) })
  tray = createTray()
  await window.loadURL(RENDERER_URL)
}

/** The renderer's files over parley://app/, each with our CSP; nothing outside RENDERER_DIR. */
function serveRenderer (): void {
  protocol.handle(APP_SCHEME, async (request) => {
    const target = await rendererFile(request.url)
    if ('status' in target) return new Response(null, { status: target.status })
    return new Response(await readFile(target.file), {
      headers: {
        'Content-Type': target.contentType,
        'Content-Security-Policy': CONTENT_SECURITY_POLICY,
        'X-Content-Type-Options': 'nosniff',
        'Cache-Control': 'no-store'
      }
    })
  })
}

function createWindow (): BrowserWindow {
  const window = new BrowserWindow({
    width: 1100,
    height: 760,
    minWidth: 640,
    minHeight: 440,
    show: false,
    title: 'Parley',
    icon: ICON,
    autoHideMenuBar: true,
    webPreferences: {
      preload: PRELOAD,
      contextIsolation: true,
      nodeIntegration: false,
      nodeIntegrationInSubFrames: false,
      sandbox: true,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
      navigateOnDragDrop: false,
      spellcheck: true
    }
  })
  const contents = window.webContents
  const ses = contents.session
  // Only notifications; camera, microphone, geolocation, clipboard-read, ... are denied.
  ses.setPermissionRequestHandler((wc, permission, callback) => { callback(wc === contents && isAllowedPermission(permission)) })
  ses.setPermissionCheckHandler((wc, permission) => wc === contents && isAllowedPermission(permission))
  // The page never leaves the renderer: no navigation, no redirects, no new windows, no webviews.
  contents.on('will-navigate', (e, url) => { if (!isRendererUrl(url)) e.preventDefault() })
  contents.on('will-redirect', (e, url) => { if (!isRendererUrl(url)) e.preventDefault() })
  contents.on('will-attach-webview', (e) => { e.preventDefault() })
  contents.setWindowOpenHandler(({ url }) => {
    const external = externalUrl(url)
    if (external !== undefined) void shell.openExternal(external)
    return { action: 'deny' }
  })
  window.once('ready-to-show', () => { window.show() })
  // Closing the window keeps Parley running in the tray (messages still arrive); Quit quits.
  window.on('close', (e) => {
    if (quitting) return
    e.preventDefault()
    window.hide()
  })
  window.on('closed', () => { win = undefined })
  win = window
  return window
}

function createTray (): Tray {
  const t = new Tray(nativeImage.createFromPath(ICON).resize({ width: 22, height: 22 }))
  t.setToolTip('Parley')
  t.setContextMenu(Menu.buildFromTemplate([
    { label: 'Show Parley', click: () => { showWindow() } },
    { type: 'separator' },
    { label: 'Quit', click: () => { app.quit() } }
  ]))
  t.on('click', () => { showWindow() })
  return t
}

function showWindow (): void {
  if (win === undefined) return
  if (win.isMinimized()) win.restore()
  win.show()
  win.focus()
}

/** A native notification for an incoming message while the window is not focused. */
async function notify (frame: string): Promise<void> {
  if (win === undefined || win.isFocused() || core === undefined || !Notification.isSupported()) return
  const event = JSON.parse(frame) as MessengerEvent
  if (event.event !== 'message' && event.event !== 'group.message' && event.event !== 'group.invite') return
  // Names live in core: ask it, as the renderer does.
  const contacts = await ask<{ contacts: ContactView[] }>(core, 'contacts.list')
  const groups = await ask<{ groups: GroupView[] }>(core, 'groups.list')
  const text = notificationFor(event, {
    contact: (peerId) => contacts?.contacts.find((c) => c.peerId === peerId)?.name,
    group: (id) => groups?.groups.find((g) => g.group === id)?.name
  })
  if (text === undefined) return
  const n = new Notification({ title: text.title, body: text.body })
  n.on('click', () => { showWindow() })
  n.show()
}

/** One command's result from core, or undefined if it failed. */
async function ask<T> (client: CoreClient, cmd: string): Promise<T | undefined> {
  const response = JSON.parse(await client.request(JSON.stringify({ id: `main:${cmd}`, cmd }))) as { ok: boolean, result?: T }
  return response.ok ? response.result : undefined
}

/** Unwire IPC, then stop core (bounded: quitting never hangs on the network) and its process. */
async function shutdown (): Promise<void> {
  unwire?.()
  unwire = undefined
  tray?.destroy()
  tray = undefined
  const client = core
  core = undefined
  await client?.stop(STOP_TIMEOUT_MS)
  coreProcess?.kill()
}

/** Start failed (data dir locked, sealed key not openable, ...) or core died: say why, then exit. */
async function fatal (err: unknown): Promise<void> {
  if (quitting) return // already on the way out (the core process exits when we stop it)
  quitting = true
  const e = describeError(err)
  log.error('fatal: %s: %s', e.name, e.message)
  dialog.showErrorBox(core === undefined ? 'Parley cannot start' : 'Parley stopped', `${e.name}: ${e.message}`)
  await shutdown()
  stopped = true
  app.exit(1)
}
