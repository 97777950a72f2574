import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The compiled Electron main process (this directory in dist/). */
export const ELECTRON_MAIN = fileURLToPath(new URL('./main.js', import.meta.url))

/** How to get the Electron binary where it is missing (shown by `npm start`). */
export const ELECTRON_INSTALL_HINT = 'run "npx install-electron" with network access'

export type ElectronBinary = { found: true, path: string } | { found: false, reason: string }

export interface LocateOptions {
  /** The `electron` npm package's directory; undefined when it is not installed. */
  packageDir: string | undefined
  env: NodeJS.ProcessEnv
  exists: (path: string) => boolean
  readText: (path: string) => string | undefined
}

/**
 * Where the Electron binary is, without downloading it. The same lookup as the `electron`
 * package's index.js (its path.txt, under dist/ or ELECTRON_OVERRIDE_DIST_PATH), but that
 * module, when the binary is missing, starts a download synchronously before it throws: on a
 * machine without network that blocks `npm start`. Here a missing binary is just an answer.
 *
 * @example
 * const electron = locateElectron()
 * if (electron.found) spawn(electron.path, [ELECTRON_MAIN])
 */
export function locateElectron (options: LocateOptions = defaultLocateOptions()): ElectronBinary {
  const { packageDir, env, exists, readText } = options
  if (packageDir === undefined) return { found: false, reason: 'the electron package is not installed' }
  const name = readText(join(packageDir, 'path.txt'))?.trim()
  const override = env.ELECTRON_OVERRIDE_DIST_PATH
  if (override !== undefined && override !== '') {
    const path = join(override, name !== undefined && name !== '' ? name : 'electron')
    return exists(path) ? { found: true, path } : { found: false, reason: `no Electron binary at ${path} (ELECTRON_OVERRIDE_DIST_PATH)` }
  }
  if (name === undefined || name === '') return { found: false, reason: 'the Electron binary is not installed' }
  const path = join(packageDir, 'dist', name)
  return exists(path) ? { found: true, path } : { found: false, reason: `the Electron binary is missing (${path})` }
}

function defaultLocateOptions (): LocateOptions {
  let packageDir: string | undefined
  try {
    packageDir = dirname(createRequire(import.meta.url).resolve('electron/package.json'))
  } catch {
    packageDir = undefined
  }
  return {
    packageDir,
    env: process.env,
    exists: existsSync,
    readText: (path) => {
      try {
        return readFileSync(path, 'utf8')
      } catch {
        return undefined
      }
    }
  }
}
