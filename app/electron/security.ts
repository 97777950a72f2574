import { realpath, stat } from 'node:fs/promises'
import { extname, join, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CONTENT_TYPES, staticTarget } from '../web-shell/server.js'

/**
 * The renderer's built files (Vite's output): dist/renderer in the source tree, and inside
 * app.asar once packaged (this file runs from dist/app/electron). One constant: the
 * protocol handler, the packaging config (electron-builder.yml `files`) and the docs use it.
 */
export const RENDERER_DIR = fileURLToPath(new URL('../../renderer/', import.meta.url))

/**
 * The renderer is served from this privileged custom scheme, not file://: the page gets an
 * origin of its own (`parley://app`), every response carries our CSP, and nothing outside
 * RENDERER_DIR can be read through it (Electron's security checklist: avoid file://).
 */
export const APP_SCHEME = 'parley'
export const APP_ORIGIN = `${APP_SCHEME}://app`
export const RENDERER_URL = `${APP_ORIGIN}/index.html`

/**
 * The renderer's Content-Security-Policy: its own scripts and styles only (no inline script,
 * no eval), images also from data:/blob: (avatars, QR codes), no plugins, frames, forms or
 * <base>. It reaches core through window.parley, so it needs no network at all.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "font-src 'self'",
  "connect-src 'none'",
  "object-src 'none'",
  "frame-src 'none'",
  "worker-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join('; ')

/** Whether a frame URL is our renderer (any path under APP_ORIGIN; query and hash ignored). */
export function isRendererUrl (url: string): boolean {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    return false
  }
  return u.protocol === `${APP_SCHEME}:` && u.host === 'app' && u.username === '' && u.password === '' && u.port === ''
}

/** The only permission the renderer may have: showing notifications. Everything else is denied. */
export function isAllowedPermission (permission: string): boolean {
  return permission === 'notifications'
}

/**
 * Links the renderer opens (window.open, target=_blank) never open an Electron window; https
 * ones go to the system browser, everything else (file:, javascript:, custom schemes) nowhere.
 */
export function externalUrl (url: string): string | undefined {
  try {
    const u = new URL(url)
    return u.protocol === 'https:' ? u.href : undefined
  } catch {
    return undefined
  }
}

/** What the app protocol answers for a request URL: a file to send, or an HTTP status. */
export type RendererFile = { file: string, contentType: string } | { status: 400 | 404 }

/**
 * Maps a `parley://app/...` URL to a file under `root` (RENDERER_DIR), refusing anything that
 * could climb out of it (the web shell's staticTarget rules, then realpath containment, so a
 * symlink cannot lead out either). `/` is index.html.
 */
export async function rendererFile (url: string, root: string = RENDERER_DIR): Promise<RendererFile> {
  if (!isRendererUrl(url)) return { status: 400 }
  const target = staticTarget(new URL(url).pathname)
  if (typeof target === 'number') return { status: target }
  const realRoot = await realpath(root).catch(() => undefined)
  if (realRoot === undefined) return { status: 404 }
  const file = await realpath(join(realRoot, ...target)).catch(() => undefined)
  if (file === undefined || !file.startsWith(realRoot + sep)) return { status: 404 }
  const st = await stat(file).catch(() => undefined)
  if (st?.isFile() !== true) return { status: 404 }
  return { file, contentType: CONTENT_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream' }
}
