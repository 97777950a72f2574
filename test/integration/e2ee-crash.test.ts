import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, it } from 'node:test'
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { SenderKeyMessage } from '@signalapp/libsignal-client'
import { SignalCipher, type SealedKind } from '../../core/crypto/cipher.js'
import { unhex } from '../../core/crypto/signal-state.js'
import type { PeerIdString } from '../../core/ids.js'
import { bundleToPb } from '../../core/protocols/prekeys/codec.js'
import { Bundle } from '../../core/protocols/prekeys/pb/prekeys.js'
import { LevelStore } from '../../core/store/level-store.js'

// RELIABILITY.md, "nothing lost" and forward secrecy across crashes: a real process encrypts
// with a SignalCipher over a real LevelStore and is killed with SIGKILL mid-stream; a second
// run over the same database encrypts once more. SignalCipher promises that a ratchet (1:1)
// or chain (sender key) step is durable before encrypt resolves, so no two ciphertexts ever
// come from one chain position. If the second run reused a position, the receiver, who
// decrypted everything reported before the kill, would find that message key spent
// (DuplicateCiphertextError) or the message unreadable.

const encrypter = fileURLToPath(new URL('../fixtures/crash-encrypter.js', import.meta.url))
const decoder = new TextDecoder()
const KILL_AFTER = 40

interface Run { lines: string[], stderr: string, exit: string }

/** Run the encrypter; with `killAfter`, SIGKILL it once that many ciphertexts were reported. */
async function runEncrypter (args: string[], killAfter?: number): Promise<Run> {
  const child = spawn(process.execPath, [encrypter, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ONCE: killAfter === undefined ? '1' : '0' }
  })
  const lines: string[] = []
  let stderr = ''
  let buffer = ''
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  child.stdout.on('data', (chunk: Buffer) => {
    buffer += chunk.toString()
    const parts = buffer.split('\n')
    buffer = parts.pop() ?? ''
    lines.push(...parts)
    if (killAfter !== undefined && lines.filter((l) => l.startsWith('ct ')).length >= killAfter && !child.killed) child.kill('SIGKILL')
  })
  const exit = await new Promise<string>((resolve) => {
    const watchdog = setTimeout(() => { child.kill('SIGKILL'); resolve('watchdog: no exit after 30 s') }, 30_000)
    child.on('exit', (code, signal) => { clearTimeout(watchdog); resolve(`${String(code)} ${String(signal)}`) })
  })
  return { lines, stderr, exit }
}

async function party (dir: string, name: string): Promise<{ peer: PeerIdString, store: LevelStore, cipher: SignalCipher, keyFile: string, db: string }> {
  const key = await generateKeyPair('Ed25519')
  const peer = peerIdFromPrivateKey(key).toString() as PeerIdString
  const keyFile = join(dir, `${name}.key`)
  await writeFile(keyFile, privateKeyToProtobuf(key))
  const db = join(dir, `${name}-db`)
  const store = new LevelStore(db)
  await store.open()
  const cipher = new SignalCipher(store, key, peer)
  await cipher.open()
  return { peer, store, cipher, keyFile, db }
}

/** The bytes of a hex field the encrypter reported (asserting it is hex). */
function bytesOf (s: string | undefined): Uint8Array<ArrayBuffer> {
  assert.ok(s !== undefined && /^[0-9a-f]+$/.test(s), `hex expected, got ${String(s)}`)
  return unhex(s)
}

type Party = Awaited<ReturnType<typeof party>>

/**
 * Two parties in a temp dir (A's store closed again: its process opens it), then `fn`; B's
 * store closed and the dir removed afterwards.
 */
async function withParties (prefix: string, fn: (a: Party, b: Party, dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  const a = await party(dir, 'a')
  const b = await party(dir, 'b')
  try {
    await a.store.close()
    await fn(a, b, dir)
  } finally {
    await b.store.close().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
}

/** The encrypter killed after KILL_AFTER ciphertexts, then run once more over the same database. */
async function crashThenResume (args: string[]): Promise<{ first: Run, second: Run }> {
  const first = await runEncrypter(args, KILL_AFTER)
  assert.equal(first.exit, 'null SIGKILL', `killed mid-stream; stderr: ${first.stderr.slice(-2000)}`)
  const second = await runEncrypter(args)
  assert.equal(second.exit, '0 null', `the run after the crash exits cleanly; stderr: ${second.stderr.slice(-2000)}`)
  return { first, second }
}

void describe('Signal state survives kill -9 of the encrypting process', () => {
  void it('1:1: the message encrypted after the crash decrypts, as does every one reported before it', { timeout: 60_000 }, async () => {
    await withParties('parley-ratchet-crash-', async (a, b, dir) => {
      const bundleFile = join(dir, 'b.bundle')
      await writeFile(bundleFile, Bundle.encode(bundleToPb(await b.cipher.ownBundle(true))))
      const { first, second } = await crashThenResume([a.db, a.keyFile, 'direct', b.peer, bundleFile])

      const binding = bytesOf(first.lines.find((l) => l.startsWith('binding '))?.split(' ')[1])
      const parse = (l: string): { kind: SealedKind, body: Uint8Array, binding: Uint8Array } => {
        const [, kind, body] = l.split(' ')
        assert.ok(kind === 'prekey' || kind === 'whisper')
        return { kind, body: bytesOf(body), binding }
      }
      const before = first.lines.filter((l) => l.startsWith('ct ')).map(parse)
      const after = second.lines.filter((l) => l.startsWith('ct ')).map(parse)
      assert.ok(before.length >= KILL_AFTER)
      assert.equal(after.length, 1)
      const results = await b.cipher.decrypt(a.peer, [...before, ...after], async (r, changes) => {
        await b.store.saveIncoming([], 0, changes)
        return r
      })
      const texts = results.map((r) => r.ok ? decoder.decode(r.plaintext) : `${r.error.name}: ${r.error.message}`)
      assert.deepEqual(texts, [...before.map((_, i) => `m${i + 1}`), 'after'])
    })
  })

  void it('sender keys: the group message encrypted after the crash takes a later chain position and decrypts', { timeout: 60_000 }, async () => {
    await withParties('parley-chain-crash-', async (a, b) => {
      const { first, second } = await crashThenResume([a.db, a.keyFile, 'group', 'Q3Jhc2hDbHViR3JvdXBJZA'])

      await b.cipher.processGroupDistribution(a.peer, bytesOf(first.lines.find((l) => l.startsWith('skdm '))?.split(' ')[1]))
      const before = first.lines.filter((l) => l.startsWith('ct ')).map((l) => bytesOf(l.split(' ')[1]))
      const after = second.lines.filter((l) => l.startsWith('ct ')).map((l) => bytesOf(l.split(' ')[1]))
      assert.ok(before.length >= KILL_AFTER)
      assert.equal(after.length, 1)
      const iterations = [...before, ...after].map((ct) => SenderKeyMessage.deserialize(ct).iteration())
      for (let i = 1; i < iterations.length; i++) {
        assert.ok((iterations[i] as number) > (iterations[i - 1] as number), `chain positions only go forward: ${iterations.join(',')}`)
      }
      const texts: string[] = []
      for (const ct of [...before, ...after]) {
        texts.push(await b.cipher.groupDecrypt(a.peer, ct, async ({ plaintext }, changes) => {
          await b.store.putGroupEntries(new Map(), changes)
          return decoder.decode(plaintext)
        }))
      }
      assert.deepEqual(texts, [...before.map((_, i) => `m${i + 1}`), 'after'])
    })
  })
})
