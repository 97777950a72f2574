/**
 * Spawns real `parley node` processes (bin/parley.js) for integration tests: real TCP on
 * 127.0.0.1, a real level database in a temp dir, the JSON-lines API on stdin/stdout.
 *
 * @example
 * const cluster = new Cluster()
 * const a = await cluster.start({ name: 'a' })
 * const me = await a.call('whoami', {})
 * await a.stop() // stdin EOF, asserts exit code 0
 * await cluster.cleanup() // kills leftovers, removes temp dirs
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable, Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import type { CommandName, CommandParams, CommandResult, ErrorShape } from '../../core/api/contract.js'

/** Repo root: this file runs from dist/test/helpers. */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url))
export const PARLEY_BIN = join(REPO_ROOT, 'bin', 'parley.js')

export type Line = Record<string, unknown>

export interface ReadyInfo {
  peerId: string
  addrs: string[]
  invite: string
}

export type RawResponse =
  | { id: number | string | null, ok: true, result: unknown }
  | { id: number | string | null, ok: false, error: ErrorShape }

export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

export interface StartOptions {
  /** Reuse a data dir (restart); a fresh temp dir otherwise. */
  dataDir?: string
  /** TCP port on 127.0.0.1; 0 (any) if not given. */
  port?: number
  name?: string
  /** Label used in diagnostics. */
  label?: string
  readyTimeoutMs?: number
  extraArgs?: string[]
  /** Replace the default `--listen /ip4/127.0.0.1/tcp/<port>` (e.g. ['/p2p-circuit']). */
  listen?: string[]
  /** `parley relay` (its ready line has no invite) or `parley web` (stdin unused: stop with terminate()) instead of `parley node`. */
  command?: 'node' | 'relay' | 'web'
  /** Extra environment variables (e.g. DEBUG for verbose logs). */
  env?: Record<string, string>
}

export class CommandError extends Error {
  override name = 'CommandError'
  constructor (readonly cmd: string, readonly error: ErrorShape) {
    super(`${cmd} failed: ${error.name}: ${error.message}`)
  }
}

interface Waiter {
  predicate: (line: Line) => boolean
  since: number
  resolve: (line: Line) => void
  reject: (err: Error) => void
}

const DEFAULT_CMD_TIMEOUT_MS = 20_000

/**
 * Fixed ports for nodes that restart on one address come from below Linux's ephemeral range
 * (32768-60999 by default): a port the OS handed out for `listen(0)` or an outgoing
 * connection could be taken again by a concurrent test while its node is down (a relay
 * restart once failed with EADDRINUSE that way). Ports in this range are handed out only here.
 */
const FIXED_PORT_MIN = 20_000
const FIXED_PORT_SPAN = 12_000
let nextFixedPort = FIXED_PORT_MIN + Math.floor(Math.random() * FIXED_PORT_SPAN)

/** An unused TCP port on 127.0.0.1, outside the ephemeral range, to restart a node on one address. */
export async function freePort (): Promise<number> {
  for (let tries = 0; tries < 100; tries++) {
    const port = nextFixedPort
    nextFixedPort = FIXED_PORT_MIN + ((nextFixedPort - FIXED_PORT_MIN + 1 + Math.floor(Math.random() * 50)) % FIXED_PORT_SPAN)
    if (await canListen(port)) return port
  }
  throw new Error('no free port below the ephemeral range')
}

async function canListen (port: number): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    const srv = createServer()
    srv.unref()
    srv.once('error', () => { resolve(false) })
    srv.listen(port, '127.0.0.1', () => { srv.close(() => { resolve(true) }) })
  })
}

export async function makeTempDir (prefix = 'parley-it-'): Promise<string> {
  return await mkdtemp(join(tmpdir(), prefix))
}

/** One running `parley node` child process. Create with `NodeProcess.start`. */
export class NodeProcess {
  /** Every stdout line parsed as JSON, in order. */
  readonly lines: Line[] = []
  /** The lines that carry `event` (the ready line included). */
  readonly events: Line[] = []
  /** Stdout lines that were not JSON objects (the contract says there are none). */
  readonly badLines: string[] = []
  stderr = ''
  ready!: ReadyInfo
  readonly exited: Promise<Exit>
  exit: Exit | undefined

  private nextId = 1
  private readonly pending = new Map<number, { resolve: (r: RawResponse) => void, reject: (e: Error) => void }>()
  private waiters: Waiter[] = []
  private buffer = ''

  private constructor (
    private readonly child: ChildProcessByStdio<Writable, Readable, Readable>,
    readonly dataDir: string,
    readonly port: number,
    readonly label: string
  ) {
    child.stdin.on('error', () => {}) // EPIPE after the child died
    child.stdout.setEncoding('utf8')
    child.stderr.setEncoding('utf8')
    child.stdout.on('data', (chunk: string) => { this.onStdout(chunk) })
    child.stderr.on('data', (chunk: string) => {
      this.stderr += chunk
      if (this.stderr.length > 200_000) this.stderr = this.stderr.slice(-100_000)
    })
    this.exited = new Promise<Exit>((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit = { code, signal }
        const err = new Error(`${this.label} exited (code ${String(code)}, signal ${String(signal)})${this.diagnostics()}`)
        for (const p of this.pending.values()) p.reject(err)
        this.pending.clear()
        for (const w of this.waiters) w.reject(err)
        this.waiters = []
        resolve({ code, signal })
      })
    })
  }

  /** Spawn `parley node` and wait for its ready line. */
  static async start (options: StartOptions = {}): Promise<NodeProcess> {
    const dataDir = options.dataDir ?? await makeTempDir()
    const port = options.port ?? 0
    const command = options.command ?? 'node'
    const listen = options.listen ?? [`/ip4/127.0.0.1/tcp/${port}`]
    const args = [PARLEY_BIN, command, '--data', dataDir, ...listen.flatMap((a) => ['--listen', a])]
    if (command !== 'relay') args.push('--no-mdns')
    if (options.name !== undefined) args.push('--name', options.name)
    args.push(...(options.extraArgs ?? []))
    const child = spawn(process.execPath, args, {
      cwd: REPO_ROOT,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...(options.env ?? {}) }
    })
    const node = new NodeProcess(child, dataDir, port, options.label ?? options.name ?? `node:${port}`)
    let readyLine: Line
    try {
      readyLine = await node.waitFor((l) => l.event === 'ready', options.readyTimeoutMs ?? 20_000, { description: 'ready line' })
    } catch (err) {
      await node.kill9()
      throw err
    }
    node.ready = {
      peerId: readyLine.peerId as string,
      addrs: readyLine.addrs as string[],
      invite: (readyLine.invite as string | undefined) ?? ''
    }
    return node
  }

  get pid (): number | undefined {
    return this.child.pid
  }

  get running (): boolean {
    return this.exit === undefined
  }

  /** Index of the next line to be seen; pass as `since` to wait only for later lines. */
  mark (): number {
    return this.lines.length
  }

  /** Write one raw line to stdin (for malformed input tests). */
  sendRaw (line: string): void {
    this.child.stdin.write(line.endsWith('\n') ? line : line + '\n')
  }

  /** Send a request; `id` is assigned automatically. Resolves with the raw response. */
  async cmd (request: Record<string, unknown>, timeoutMs = DEFAULT_CMD_TIMEOUT_MS): Promise<RawResponse> {
    if (!this.running) throw new Error(`${this.label} is not running`)
    const id = this.nextId++
    const line = JSON.stringify({ ...request, id })
    return await new Promise<RawResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`${this.label}: no response to ${line.slice(0, 200)} in ${timeoutMs} ms${this.diagnostics()}`))
      }, timeoutMs)
      this.pending.set(id, {
        resolve: (r) => { clearTimeout(timer); resolve(r) },
        reject: (e) => { clearTimeout(timer); reject(e) }
      })
      this.child.stdin.write(line + '\n')
    })
  }

  /** A typed command: resolves with `result`, throws CommandError on `ok: false`. */
  async call<C extends CommandName> (cmd: C, params: CommandParams<C>, timeoutMs?: number): Promise<CommandResult<C>> {
    const r = await this.cmd({ cmd, ...params }, timeoutMs)
    if (!r.ok) throw new CommandError(cmd, r.error)
    return r.result as CommandResult<C>
  }

  /** Send a command expected to fail; resolves with its error. */
  async callError (request: Record<string, unknown>, timeoutMs?: number): Promise<ErrorShape> {
    const r = await this.cmd(request, timeoutMs)
    assert.equal(r.ok, false, `${this.label}: expected ${JSON.stringify(request).slice(0, 200)} to fail, got ${JSON.stringify(r).slice(0, 300)}`)
    if (r.ok) throw new Error('unreachable')
    return r.error
  }

  /**
   * The first line (from `since`, default all lines ever seen) matching the predicate, now or
   * when it arrives. Rejects after timeoutMs, or when the process exits, listing the last lines.
   */
  async waitFor (predicate: (line: Line) => boolean, timeoutMs: number, opts: { since?: number, description?: string } = {}): Promise<Line> {
    const since = opts.since ?? 0
    for (let i = since; i < this.lines.length; i++) {
      const l = this.lines[i] as Line
      if (predicate(l)) return l
    }
    if (!this.running) throw new Error(`${this.label} has exited; still waiting for ${opts.description ?? 'a line'}${this.diagnostics()}`)
    return await new Promise<Line>((resolve, reject) => {
      const w: Waiter = {
        predicate,
        since,
        resolve: (l) => { clearTimeout(timer); resolve(l) },
        reject: (e) => { clearTimeout(timer); reject(e) }
      }
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w)
        reject(new Error(`${this.label}: timed out after ${timeoutMs} ms waiting for ${opts.description ?? 'a matching line'}${this.diagnostics()}`))
      }, timeoutMs)
      this.waiters.push(w)
    })
  }

  /** Poll until `check` returns a value other than undefined (for state that has no event). */
  async poll<T> (check: () => Promise<T | undefined>, timeoutMs: number, description: string, intervalMs = 200): Promise<T> {
    const deadline = Date.now() + timeoutMs
    let last: string | undefined
    for (;;) {
      try {
        const v = await check()
        if (v !== undefined) return v
      } catch (err) {
        last = err instanceof Error ? `${err.name}: ${err.message}` : JSON.stringify(err)
      }
      if (Date.now() > deadline) {
        throw new Error(`${this.label}: timed out after ${timeoutMs} ms polling for ${description}${last !== undefined ? ` (last error: ${last})` : ''}${this.diagnostics()}`)
      }
      await new Promise((resolve) => setTimeout(resolve, intervalMs))
    }
  }

  /** End stdin (EOF), wait for exit, assert exit code 0. */
  async stop (timeoutMs = 15_000): Promise<Exit> {
    this.child.stdin.end()
    const exit = await this.awaitExit(timeoutMs, 'exit after stdin EOF')
    assert.deepEqual(exit, { code: 0, signal: null }, `${this.label}: expected a clean exit after EOF${this.diagnostics()}`)
    return exit
  }

  /** SIGTERM, wait for exit, assert exit code 0. */
  async terminate (timeoutMs = 15_000): Promise<Exit> {
    this.child.kill('SIGTERM')
    const exit = await this.awaitExit(timeoutMs, 'exit after SIGTERM')
    assert.deepEqual(exit, { code: 0, signal: null }, `${this.label}: expected a clean exit after SIGTERM${this.diagnostics()}`)
    return exit
  }

  /** Send a signal (e.g. SIGSTOP to freeze the process as a hung peer would be, SIGCONT to resume it). */
  signal (sig: NodeJS.Signals): void {
    if (!this.child.kill(sig)) throw new Error(`${this.label}: could not send ${sig}`)
  }

  /** SIGKILL (kill -9) and wait until the process is gone. */
  async kill9 (): Promise<Exit> {
    if (this.running) this.child.kill('SIGKILL')
    return await this.exited
  }

  /** The last stdout lines and stderr, for error messages. */
  diagnostics (lastLines = 15): string {
    const tail = this.lines.slice(-lastLines).map((l) => '  ' + JSON.stringify(l).slice(0, 300))
    const bad = this.badLines.slice(-5).map((l) => '  (not JSON) ' + l.slice(0, 300))
    const err = this.stderr.trim() === '' ? '' : `\n stderr of ${this.label}:\n${this.stderr.trim().slice(-3000)}`
    return `\n last stdout lines of ${this.label} (${this.lines.length} in all):\n${[...tail, ...bad].join('\n')}${err}`
  }

  private async awaitExit (timeoutMs: number, what: string): Promise<Exit> {
    let timer: ReturnType<typeof setTimeout> | undefined
    const timeout = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => { resolve('timeout') }, timeoutMs) })
    const r = await Promise.race([this.exited, timeout])
    clearTimeout(timer)
    if (r === 'timeout') {
      const diag = this.diagnostics()
      await this.kill9()
      throw new Error(`${this.label}: no ${what} within ${timeoutMs} ms (killed it)${diag}`)
    }
    return r
  }

  private onStdout (chunk: string): void {
    this.buffer += chunk
    let nl: number
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const text = this.buffer.slice(0, nl)
      this.buffer = this.buffer.slice(nl + 1)
      if (text.trim() === '') continue
      this.onLine(text)
    }
  }

  private onLine (text: string): void {
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      this.badLines.push(text)
      return
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      this.badLines.push(text)
      return
    }
    const line = parsed as Line
    this.lines.push(line)
    const index = this.lines.length - 1
    if (typeof line.event === 'string') this.events.push(line)
    if ('ok' in line && typeof line.id === 'number') {
      const p = this.pending.get(line.id)
      if (p !== undefined) {
        this.pending.delete(line.id)
        p.resolve(line as RawResponse)
      }
    }
    const matched = this.waiters.filter((w) => index >= w.since && w.predicate(line))
    if (matched.length > 0) {
      this.waiters = this.waiters.filter((w) => !matched.includes(w))
      for (const w of matched) w.resolve(line)
    }
  }
}

/** Tracks the processes and temp dirs of one test so they are always cleaned up. */
export class Cluster {
  readonly nodes: NodeProcess[] = []
  private readonly dirs: string[] = []

  async tempDir (): Promise<string> {
    const d = await makeTempDir()
    this.dirs.push(d)
    return d
  }

  async start (options: StartOptions = {}): Promise<NodeProcess> {
    const dataDir = options.dataDir ?? await this.tempDir()
    const node = await NodeProcess.start({ ...options, dataDir })
    this.nodes.push(node)
    return node
  }

  /** Start again on the same data dir and port (the port must have been fixed, see freePort). */
  async restart (prev: NodeProcess, options: Omit<StartOptions, 'dataDir' | 'port'> = {}): Promise<NodeProcess> {
    assert.equal(prev.running, false, `${prev.label} is still running`)
    return await this.start({ label: prev.label, ...options, dataDir: prev.dataDir, port: prev.port })
  }

  /** Kill whatever still runs and remove the temp dirs. */
  async cleanup (): Promise<void> {
    await Promise.all(this.nodes.map(async (n) => await n.kill9()))
    await Promise.all(this.dirs.map(async (d) => { await rm(d, { recursive: true, force: true }) }))
  }
}
