/**
 * A scalable Bloom filter over message ids: "definitely never stored" answers need no disk
 * read, so receiving a new message costs one write instead of a read and a write. "Maybe
 * stored" falls back to the index. When a layer fills up a twice-larger one is added, so
 * the false-positive rate stays near 1% however many ids are added, with no rebuild.
 *
 * @example
 * const f = new IdFilter()
 * f.add('01J9Z...')
 * f.mightContain('01J9Z...') // true; for ids never added, false 99% of the time
 */
export class IdFilter {
  private readonly layers: Layer[] = []

  constructor (private readonly firstCapacity = 65_536) {
    this.layers.push(new Layer(firstCapacity))
  }

  add (id: string): void {
    let top = this.layers[this.layers.length - 1] as Layer
    if (top.count >= top.capacity) {
      top = new Layer(top.capacity * 2)
      this.layers.push(top)
    }
    top.add(id)
  }

  mightContain (id: string): boolean {
    const [h1, h2] = hashes(id)
    for (const layer of this.layers) {
      if (layer.has(h1, h2)) return true
    }
    return false
  }

  /** Bytes held by the bit arrays. */
  get byteLength (): number {
    return this.layers.reduce((n, l) => n + l.bits.byteLength, 0)
  }
}

const PROBES = 7 // with 10 bits per id: about 0.8% false positives per layer

class Layer {
  readonly bits: Uint32Array
  private readonly size: number
  count = 0

  constructor (readonly capacity: number) {
    this.size = capacity * 10
    this.bits = new Uint32Array(Math.ceil(this.size / 32))
  }

  add (id: string): void {
    const [h1, h2] = hashes(id)
    for (let i = 0; i < PROBES; i++) {
      const bit = (h1 + i * h2) % this.size
      this.bits[bit >>> 5] = (this.bits[bit >>> 5] ?? 0) | (1 << (bit & 31))
    }
    this.count++
  }

  has (h1: number, h2: number): boolean {
    for (let i = 0; i < PROBES; i++) {
      const bit = (h1 + i * h2) % this.size
      if (((this.bits[bit >>> 5] ?? 0) & (1 << (bit & 31))) === 0) return false
    }
    return true
  }
}

/** Two independent 32-bit FNV-1a hashes (double hashing); h2 is odd so probes spread. */
function hashes (id: string): [number, number] {
  let h1 = 0x811c9dc5
  let h2 = 0x01000193 ^ 0x5bd1e995
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i)
    h1 = Math.imul(h1 ^ c, 0x01000193)
    h2 = Math.imul(h2 ^ c, 0x5bd1e995)
  }
  return [h1 >>> 0, (h2 | 1) >>> 0]
}
