import type { KeyProtector } from '../../core/identity/key-protector.js'

/**
 * A stand-in for the OS keychain (safeStorage): "seals" with a one-byte key (XOR, tagged
 * with the key so a wrong one is refused) and counts its calls. Never a real protection.
 */
export function fakeProtector (secret: number, name = 'fake-keychain'): KeyProtector & { seals: number, opens: number } {
  return {
    name,
    seals: 0,
    opens: 0,
    async seal (plain) {
      this.seals++
      return Uint8Array.from([secret, ...plain.map((b) => b ^ secret)])
    },
    async open (sealed) {
      this.opens++
      if (sealed[0] !== secret) throw new Error('the keychain refuses: wrong key')
      return Uint8Array.from(sealed.subarray(1), (b) => b ^ secret)
    }
  }
}
