import '../../core/polyfill.js'
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { appendFile, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LevelStore } from '../../core/store/level-store.js'
import { isMessageId, type MessageId, type PeerIdString } from '../../core/ids.js'

const writer = fileURLToPath(new URL('../fixtures/crash-writer.js', import.meta.url))
const peer = '12D3KooWCDZYL5dokpvdNVGEWRdeRMfCQHEpK1cNP2J7Q5ZCu3ZT' as PeerIdString

// A real process writing to a real level database (journal + level), killed with SIGKILL
// while writing: every write it had acknowledged must be there after reopening.
describe('LevelStore survives kill -9', () => {
  it('keeps every acknowledged write when the writer is killed mid-stream', { timeout: 60_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'parley-crash-'))
    const location = join(dir, 'db')
    try {
      const acked: MessageId[] = []
      const child = spawn(process.execPath, [writer, location, '100000'], { stdio: ['ignore', 'pipe', 'pipe'] })
      let stderr = ''
      child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
      let buffer = ''
      let stuck: string | undefined
      await new Promise<void>((resolve) => {
        // A hang says where it is instead of only timing out.
        const watchdog = setTimeout(() => {
          stuck = `no exit after 30 s: ${acked.length} acknowledged, exit ${String(child.exitCode)} ${String(child.signalCode)}, killed ${String(child.killed)}; stderr: ${stderr.slice(-2000)}`
          child.kill('SIGKILL')
          resolve()
        }, 30_000)
        child.on('exit', () => { clearTimeout(watchdog) })
        child.stdout.on('data', (chunk: Buffer) => {
          buffer += chunk.toString()
          const lines = buffer.split('\n')
          buffer = lines.pop() ?? ''
          for (const line of lines) if (isMessageId(line)) acked.push(line)
          if (acked.length >= 3000 && child.exitCode === null && !child.killed) {
            child.kill('SIGKILL')
          }
        })
        child.on('exit', () => { resolve() })
      })
      assert.equal(stuck, undefined)
      assert.ok(acked.length >= 3000, `writer acknowledged ${acked.length} writes before the kill; exit ${String(child.exitCode)} ${String(child.signalCode)}; stderr: ${stderr.slice(-2000)}`)

      const store = new LevelStore(location)
      await store.open()
      try {
        const outbox = await store.listOutbox()
        const inOutbox = new Set(outbox.map((o) => o.id))
        const missing = acked.filter((id) => !inOutbox.has(id))
        assert.deepEqual(missing.slice(0, 5), [], `every acknowledged outbox entry survived (${missing.length} of ${acked.length} missing, ${outbox.length} in the outbox)`)
        for (const id of [acked[0], acked[acked.length - 1]]) {
          assert.ok(id !== undefined)
          const m = await store.getMessage(id)
          assert.equal(m?.id, id, 'acknowledged message record survived')
        }
        assert.ok(await store.getClock() >= acked.length, 'clock survived')
      } finally {
        await store.close()
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('drops a torn journal tail and keeps the records before it', { timeout: 60_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'parley-torn-'))
    const location = join(dir, 'db')
    try {
      const child = spawn(process.execPath, [writer, location, '50'], { stdio: ['ignore', 'pipe', 'inherit'] })
      child.on('error', () => {})
      let out = ''
      await new Promise<void>((resolve) => {
        child.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString()
          if (out.includes('all\n') && !child.killed) child.kill('SIGKILL')
        })
        child.on('exit', () => { resolve() })
      })
      const acked = out.split('\n').filter(isMessageId)
      assert.ok(acked.length >= 50)
      // A half-written record at the end, as a power cut during a write would leave.
      await appendFile(`${location}.journal`, Buffer.from([0, 0, 1, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3]))
      const store = new LevelStore(location)
      await store.open()
      try {
        const ids = new Set((await store.listOutbox()).map((o) => o.id))
        assert.deepEqual(acked.filter((id) => !ids.has(id)), [])
        const page = await store.history(peer, { limit: 1000 })
        assert.ok(page.length >= 50)
      } finally {
        await store.close()
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
