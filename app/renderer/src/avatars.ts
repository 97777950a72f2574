/**
 * Avatars in the renderer: contact and own pictures fetched with `profile.avatar` when their
 * hash (ContactView.avatar, WhoAmI.avatar) changes, kept as data URLs (the CSP allows `data:`
 * images), and the downscaling of a chosen file before `profile.set`.
 */
import { useEffect, useState } from 'react'
import type { ParleyClient } from './client.js'

/** What the app sends: a square this many pixels a side. */
export const AVATAR_SIDE = 128
/** The node takes at most 48 KiB (core/profile.ts); stay well under it. */
const MAX_BYTES = 40 * 1024

const cache = new Map<string, Promise<string | undefined>>()

/** The picture of `peerId` at version `hash` as a data URL; undefined while loading or if there is none. */
export function useAvatarUrl (client: ParleyClient, peerId: string, hash: string | undefined): string | undefined {
  const [url, setUrl] = useState<string>()
  useEffect(() => {
    setUrl(undefined)
    if (hash === undefined) return
    const key = `${peerId}:${hash}`
    let load = cache.get(key)
    if (load === undefined) {
      load = client.call('profile.avatar', { peerId }).then(
        (r) => r.avatar === null ? undefined : `data:${r.avatar.mime};base64,${r.avatar.data}`,
        () => undefined)
      cache.set(key, load)
      void load.then((u) => { if (u === undefined) cache.delete(key) }) // try again next time
    }
    let live = true
    void load.then((u) => { if (live) setUrl(u) })
    return () => { live = false }
  }, [client, peerId, hash])
  return url
}

/**
 * A chosen image file, centre-cropped and scaled to AVATAR_SIDE x AVATAR_SIDE, as base64
 * WebP (JPEG where the browser cannot encode WebP), lowering the quality until it is small.
 */
export async function downscale (file: Blob): Promise<{ base64: string, mime: string }> {
  const bitmap = await createImageBitmap(file)
  const canvas = document.createElement('canvas')
  canvas.width = AVATAR_SIDE
  canvas.height = AVATAR_SIDE
  const ctx = canvas.getContext('2d')
  if (ctx === null) throw new Error('this browser cannot draw images')
  const side = Math.min(bitmap.width, bitmap.height)
  ctx.fillStyle = '#fff' // transparent pictures on white, as JPEG would show them anyway
  ctx.fillRect(0, 0, AVATAR_SIDE, AVATAR_SIDE)
  ctx.drawImage(bitmap, (bitmap.width - side) / 2, (bitmap.height - side) / 2, side, side, 0, 0, AVATAR_SIDE, AVATAR_SIDE)
  bitmap.close()
  for (const quality of [0.85, 0.7, 0.5, 0.3]) {
    for (const type of ['image/webp', 'image/jpeg']) {
      const blob = await new Promise<Blob | null>((resolve) => { canvas.toBlob(resolve, type, quality) })
      if (blob === null || blob.type !== type || blob.size > MAX_BYTES) continue
      return { base64: await toBase64(blob), mime: type }
    }
  }
  throw new Error('the picture could not be made small enough')
}

async function toBase64 (blob: Blob): Promise<string> {
  const bytes = new Uint8Array(await blob.arrayBuffer())
  let binary = ''
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000))
  return btoa(binary)
}
