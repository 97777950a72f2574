import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { avatarHash, avatarProblem, decodeBase64, imageType, MAX_AVATAR_BYTES, nameProblem } from '../../core/profile.js'
import { jpegHeader, png, webpHeader } from '../helpers/images.js'

describe('profile checks (core/profile.ts)', () => {
  it('reads the format and size of PNG, JPEG and WebP headers', () => {
    assert.deepEqual(imageType(png(128, 64)), { mime: 'image/png', width: 128, height: 64 })
    assert.deepEqual(imageType(jpegHeader(128, 96)), { mime: 'image/jpeg', width: 128, height: 96 })
    assert.deepEqual(imageType(webpHeader(100, 50)), { mime: 'image/webp', width: 100, height: 50 })
    assert.equal(imageType(new TextEncoder().encode('GIF89a, or any other text at all')), undefined)
    assert.equal(imageType(png(8, 8).subarray(0, 16)), undefined, 'a PNG cut before its size')
    assert.equal(imageType(jpegHeader(8, 8).subarray(0, 10)), undefined, 'a JPEG without a frame header')
    assert.equal(imageType(webpHeader(8, 8).subarray(0, 24)), undefined, 'a WebP shorter than its RIFF size')
  })

  it('accepts an avatar only if it is an image of at most 48 KiB and 1024 px a side', () => {
    assert.equal(avatarProblem(png(128, 128)), undefined)
    assert.equal(avatarProblem(jpegHeader(1024, 1024)), undefined)
    assert.match(avatarProblem(new Uint8Array(0)) ?? '', /empty/)
    assert.match(avatarProblem(new TextEncoder().encode('just text')) ?? '', /not a PNG, JPEG or WebP/)
    assert.match(avatarProblem(png(1025, 1)) ?? '', /1025x1/)
    assert.match(avatarProblem(new Uint8Array(MAX_AVATAR_BYTES + 1)) ?? '', /at most 49152/)
  })

  it('decodes only strict, canonical base64, and refuses oversize input before decoding it', () => {
    assert.deepEqual(decodeBase64(Buffer.from('hello').toString('base64'), 100), new TextEncoder().encode('hello'))
    for (const bad of ['aGVsbG8', 'aGVs bG8=', 'aGVsbG8=\n', 'data:image/png;base64,aGVsbG8=', 'aGVsbG9=', '****']) {
      assert.equal(decodeBase64(bad, 100), undefined, JSON.stringify(bad))
    }
    assert.equal(decodeBase64('A'.repeat(1000), 100), 'too large')
    assert.ok(decodeBase64(Buffer.alloc(100).toString('base64'), 100) instanceof Uint8Array, 'exactly the limit')
  })

  it('checks names as the user types them, and hashes avatars by content', () => {
    assert.equal(nameProblem(' Ada '), undefined)
    assert.match(nameProblem('   ') ?? '', /1-64/)
    assert.match(nameProblem('x'.repeat(65)) ?? '', /1-64/)
    assert.match(nameProblem(7) ?? '', /string/)
    assert.equal(avatarHash(png(4, 4)), avatarHash(png(4, 4)))
    assert.notEqual(avatarHash(png(4, 4)), avatarHash(png(4, 5)))
    assert.match(avatarHash(png(4, 4)), /^[0-9a-f]{16}$/)
  })
})
