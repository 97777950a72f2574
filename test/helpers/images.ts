import { crc32, deflateSync } from 'node:zlib'

/**
 * A real PNG (8-bit RGB, one colour, optional noise so it does not compress away), decodable
 * by any browser: for avatar tests.
 */
export function png (width: number, height: number, rgb: [number, number, number] = [200, 80, 40], noise?: () => number): Buffer {
  const row = Buffer.alloc(1 + width * 3)
  const rows: Buffer[] = []
  for (let y = 0; y < height; y++) {
    const r = Buffer.from(row)
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) r[1 + x * 3 + c] = noise !== undefined ? Math.floor(noise() * 256) : rgb[c] as number
    }
    rows.push(r)
  }
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0)
  ihdr.writeUInt32BE(height, 4)
  ihdr[8] = 8 // bit depth
  ihdr[9] = 2 // truecolour
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.concat(rows))),
    chunk('IEND', Buffer.alloc(0))
  ])
}

function chunk (type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8)
  head.writeUInt32BE(data.byteLength, 0)
  head.write(type, 4, 'latin1')
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0)
  return Buffer.concat([head, data, crc])
}

/** The header of a baseline JPEG of this size (SOI, APP0, SOF0): enough for format sniffing. */
export function jpegHeader (width: number, height: number): Buffer {
  const app0 = Buffer.from([0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00])
  const sof = Buffer.from([0xff, 0xc0, 0x00, 0x11, 0x08, height >> 8, height & 0xff, width >> 8, width & 0xff, 0x03, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1])
  return Buffer.concat([Buffer.from([0xff, 0xd8]), app0, sof, Buffer.from([0xff, 0xd9])])
}

/** The header of a lossless WebP (RIFF, VP8L) of this size: enough for format sniffing. */
export function webpHeader (width: number, height: number): Buffer {
  const bits = ((width - 1) & 0x3fff) | (((height - 1) & 0x3fff) << 14)
  const vp8l = Buffer.alloc(13)
  vp8l[0] = 0x2f
  vp8l.writeUInt32LE(bits >>> 0, 1)
  const body = Buffer.concat([Buffer.from('WEBP'), Buffer.from('VP8L'), Buffer.from([vp8l.byteLength, 0, 0, 0]), vp8l, Buffer.alloc(1)])
  const size = Buffer.alloc(4)
  size.writeUInt32LE(body.byteLength, 0)
  return Buffer.concat([Buffer.from('RIFF'), size, body])
}
