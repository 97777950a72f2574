/**
 * What end-to-end encryption costs per message, without the network: two SignalCiphers over
 * real LevelStores in one fresh peer process (crypto-peer.ts), encrypt on one, decrypt on
 * the other, each operation with the store write it commits. See crypto-peer.ts for the
 * phases (prekey, whisper, alternating).
 */
import { join } from 'node:path'
import type { PeerHandle } from '../peer.js'
import { summarize, type LatencySummary } from '../stats.js'
import type { CryptoPhaseName, CryptoPhaseRun } from './crypto-peer.js'

export interface CryptoOptions {
  messageBytes: number
  warmup: number
  /** Timed messages per phase. */
  samples: number
  timeoutMs: number
}

export interface CryptoPhaseResult {
  phase: CryptoPhaseName
  /** Message kinds seen ('prekey' / 'whisper': Signal's PreKeySignalMessage / SignalMessage). */
  kinds: Record<string, number>
  /** `cipher.encrypt` of one envelope, its putCrypto commit included. */
  encrypt: LatencySummary
  /** `cipher.decrypt` of one ciphertext, its saveIncoming commit included. */
  decrypt: LatencySummary
  /** Encrypt + decrypt of the same message. */
  perMessage: LatencySummary
  /** Messages encrypted and decrypted per second, one after another on one thread. */
  msgsPerSec: number
  /** Median sizes: libsignal's ciphertext and the Sealed frame that carries it. */
  ciphertextBytes: number
  sealedBytes: number
}

export interface CryptoResult {
  /** Plaintext size: one encoded text envelope with a `messageBytes`-byte text. */
  envelopeBytes: number
  messageBytes: number
  phases: CryptoPhaseResult[]
  pid: number
}

function median (values: readonly number[]): number {
  return summarize(values).p50
}

function phaseResult (r: CryptoPhaseRun): CryptoPhaseResult {
  const both = r.encryptMs.map((e, i) => e + (r.decryptMs[i] as number))
  const total = both.reduce((s, v) => s + v, 0)
  return {
    phase: r.phase,
    kinds: r.kinds,
    encrypt: summarize(r.encryptMs),
    decrypt: summarize(r.decryptMs),
    perMessage: summarize(both),
    msgsPerSec: total > 0 ? (both.length * 1000) / total : Number.NaN,
    ciphertextBytes: median(r.ciphertextBytes),
    sealedBytes: median(r.sealedBytes)
  }
}

export async function runCrypto (peer: PeerHandle, o: CryptoOptions, dataRoot: string): Promise<CryptoResult> {
  const callTimeout = (o.warmup + o.samples) * 3 * 20 + o.timeoutMs
  const run = await peer.call('crypto.run', { dataDir: join(dataRoot, `${peer.name}-crypto`), messageBytes: o.messageBytes, warmup: o.warmup, samples: o.samples }, callTimeout)
  return { envelopeBytes: run.envelopeBytes, messageBytes: o.messageBytes, phases: run.phases.map(phaseResult), pid: peer.pid }
}
