import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createServer, request } from 'node:http'
import { connect as tcpConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { WebSocket } from 'ws'
import { staticTarget, WebShellServer, type WebShellApi } from '../../app/web-shell/server.js'
import type { CommandName, CommandParams, CommandResult, ErrorShape } from '../../core/api/contract.js'
import { Cluster, makeTempDir, PARLEY_BIN, REPO_ROOT, type NodeProcess } from '../helpers/node-process.js'

// `parley web` as real processes (node + HTTP/WebSocket server on 127.0.0.1), driven by a real
// WebSocket client; the static-file rules also against an in-process server over a temp dir.

type Frame = Record<string, unknown>

const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/

/** A MessengerApi client over the web shell's WebSocket. */
class ApiSocket {
  readonly frames: Frame[] = []
  closed: { code: number } | undefined
  private nextId = 1
  private readonly waiters: Array<{ predicate: (f: Frame) => boolean, resolve: (f: Frame) => void }> = []

  private constructor (readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const frame = JSON.parse(data.toString('utf8')) as Frame
      this.frames.push(frame)
      for (const w of this.waiters.filter((x) => x.predicate(frame))) {
        this.waiters.splice(this.waiters.indexOf(w), 1)
        w.resolve(frame)
      }
    })
    ws.on('close', (code) => { this.closed = { code } })
  }

  /** Opens the socket; rejects with the HTTP status if the upgrade is refused. */
  static async open (url: string, origin?: string): Promise<ApiSocket> {
    const ws = new WebSocket(url, origin !== undefined ? { origin } : {})
    return await new Promise<ApiSocket>((resolve, reject) => {
      ws.once('open', () => { resolve(new ApiSocket(ws)) })
      ws.once('unexpected-response', (_req, res) => { res.resume(); reject(new RefusedError(res.statusCode ?? 0)) })
      ws.once('error', reject)
    })
  }

  async waitFor (predicate: (f: Frame) => boolean, timeoutMs = 15_000, what = 'a frame'): Promise<Frame> {
    const seen = this.frames.find(predicate)
    if (seen !== undefined) return seen
    return await new Promise<Frame>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`timed out waiting for ${what}; frames: ${JSON.stringify(this.frames.slice(-10))}`)) }, timeoutMs)
      this.waiters.push({ predicate, resolve: (f) => { clearTimeout(timer); resolve(f) } })
    })
  }

  /** Sends raw text (or binary) and waits for the next frame with `id: null`. */
  async raw (data: string | Buffer): Promise<Frame> {
    const since = this.frames.length
    this.ws.send(data, { binary: typeof data !== 'string' })
    return await this.waitFor((f) => f.id === null && this.frames.indexOf(f) >= since, 15_000, 'an id:null response')
  }

  async request (req: Frame): Promise<Frame> {
    const id = this.nextId++
    this.ws.send(JSON.stringify({ ...req, id }))
    return await this.waitFor((f) => f.id === id && 'ok' in f, 20_000, `response ${id}`)
  }

  async call<C extends CommandName> (cmd: C, params: CommandParams<C>): Promise<CommandResult<C>> {
    const r = await this.request({ cmd, ...params })
    assert.equal(r.ok, true, `${cmd}: ${JSON.stringify(r)}`)
    return r.result as CommandResult<C>
  }

  async callError (req: Frame): Promise<ErrorShape> {
    const r = await this.request(req)
    assert.equal(r.ok, false, JSON.stringify(r))
    return r.error as ErrorShape
  }

  close (): void {
    this.ws.close()
  }
}

class RefusedError extends Error {
  override name = 'RefusedError'
  constructor (readonly status: number) { super(`upgrade refused with ${status}`) }
}

interface HttpReply { status: number, headers: Record<string, string | string[] | undefined>, body: string }

/** One raw HTTP request: the path goes on the wire exactly as given (no URL normalisation). */
async function http (port: number, path: string, method = 'GET', headers: Record<string, string> = {}): Promise<HttpReply> {
  return await new Promise<HttpReply>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body }) })
    })
    req.on('error', reject)
    req.end()
  })
}

/**
 * A WebSocket upgrade written by hand, followed at once (same write) by a masked text frame
 * carrying `request`: a refused upgrade must dispatch nothing, even what is already sent.
 */
async function upgradeWithFrame (port: number, path: string, headers: Record<string, string>, request: Frame): Promise<string> {
  const payload = Buffer.from(JSON.stringify(request))
  const mask = randomBytes(4)
  const masked = Buffer.from(payload.map((b, i) => b ^ (mask[i % 4] as number)))
  assert.ok(payload.length < 126)
  const frame = Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked])
  const head = [
    `GET ${path} HTTP/1.1`, 'Upgrade: websocket', 'Connection: Upgrade',
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`, 'Sec-WebSocket-Version: 13',
    ...Object.entries({ Host: `127.0.0.1:${port}`, ...headers }).map(([k, v]) => `${k}: ${v}`), '', ''
  ].join('\r\n')
  return await new Promise<string>((resolve, reject) => {
    const sock = tcpConnect(port, '127.0.0.1', () => { sock.write(Buffer.concat([Buffer.from(head), frame])) })
    let got = ''
    sock.setEncoding('latin1')
    sock.on('data', (c: string) => { got += c })
    sock.on('close', () => { resolve(got) })
    sock.on('error', reject)
    sock.setTimeout(10_000, () => { sock.destroy(new Error(`no answer to the upgrade; got ${got}`)) })
  })
}

function baseOf (node: NodeProcess): { url: string, port: number, token: string } {
  const url = node.lines[0]?.url as string
  const m = /^http:\/\/127\.0\.0\.1:(\d+)\/#token=(.+)$/.exec(url)
  assert.ok(m !== null, `ready url: ${url}`)
  return { url, port: Number(m[1]), token: m[2] as string }
}

function apiUrl (port: number, token?: string): string {
  return `ws://127.0.0.1:${port}/api${token !== undefined ? `?token=${encodeURIComponent(token)}` : ''}`
}

void describe('parley web (spawned processes, real WebSocket)', () => {
  const cluster = new Cluster()
  let a: NodeProcess
  let b: NodeProcess

  before(async () => {
    [a, b] = await Promise.all([
      cluster.start({ command: 'web', name: 'Ada', label: 'A' }),
      cluster.start({ command: 'web', name: 'Bob', label: 'B' })
    ])
  })
  after(async () => { await cluster.cleanup() })

  void it('prints one ready line with a 127.0.0.1 URL carrying the token in the fragment', async () => {
    for (const n of [a, b]) {
      const ready = n.lines[0] as Frame
      assert.equal(ready.event, 'ready')
      assert.deepEqual(Object.keys(ready).sort(), ['addrs', 'event', 'invite', 'peerId', 'url'])
      const { token } = baseOf(n)
      assert.match(token, TOKEN_RE, '32 random bytes, base64url')
      assert.ok((ready.addrs as string[]).length > 0)
      await n.poll(async () => /parley web: open http:\/\/127\.0\.0\.1:\d+\/#token=/.test(n.stderr) ? true : undefined, 5000, 'the human line on stderr', 20)
    }
    assert.notEqual(baseOf(a).token, baseOf(b).token, 'a token per launch')
  })

  void it('answers commands over the socket with the JSON-lines shapes', { timeout: 30_000 }, async () => {
    const { port, token } = baseOf(a)
    const s = await ApiSocket.open(apiUrl(port, token))
    try {
      const me = await s.call('whoami', {})
      assert.equal(me.peerId, a.ready.peerId)
      assert.equal(me.name, 'Ada')
      assert.equal((await s.call('name.set', { name: 'Ada L.' })).name, 'Ada L.')
      assert.deepEqual(await s.call('contacts.list', {}), { contacts: [] })
      assert.deepEqual(await s.call('groups.list', {}), { groups: [] })
      assert.equal((await s.callError({ cmd: 'no.such' })).name, 'UnknownCommandError')
      assert.equal((await s.callError({ cmd: 'dm.send', to: 42 })).name, 'InvalidRequestError')
      // string ids are echoed too
      s.ws.send(JSON.stringify({ id: 'w', cmd: 'whoami' }))
      assert.equal((await s.waitFor((f) => f.id === 'w')).ok, true)
    } finally {
      s.close()
    }
  })

  void it('answers malformed frames with named errors and keeps the socket open', { timeout: 30_000 }, async () => {
    const { port, token } = baseOf(a)
    const s = await ApiSocket.open(apiUrl(port, token))
    try {
      const cases: Array<[string | Buffer, string]> = [
        ['{"id":1, not json', 'not valid JSON'],
        ['[1,2]', 'JSON object'],
        ['"whoami"', 'JSON object'],
        ['null', 'JSON object'],
        [Buffer.from('{"id":1,"cmd":"whoami"}'), 'text frames'],
        [JSON.stringify({ id: 9, cmd: 'whoami', pad: 'x'.repeat(1024 * 1024) }), 'over 1048576 bytes']
      ]
      for (const [data, message] of cases) {
        const r = await s.raw(data)
        assert.equal(r.ok, false)
        const err = r.error as ErrorShape
        assert.equal(err.name, 'InvalidRequestError')
        assert.match(err.message, new RegExp(message))
      }
      assert.equal(s.closed, undefined, 'the socket stays open')
      assert.equal((await s.call('whoami', {})).peerId, a.ready.peerId)
    } finally {
      s.close()
    }
    // the hard limits close the socket: a message over 4 MiB, a text frame that is not UTF-8
    for (const [data, code] of [['x'.repeat(4 * 1024 * 1024 + 1), 1009], [Buffer.from([0x7b, 0xff, 0x7d]), 1007]] as Array<[string | Buffer, number]>) {
      const t = await ApiSocket.open(apiUrl(port, token))
      t.ws.on('error', () => {})
      const closed = new Promise<number>((resolve) => { t.ws.once('close', (c) => { resolve(c) }) })
      t.ws.send(data, { binary: false })
      assert.equal(await closed, code)
    }
    const again = await ApiSocket.open(apiUrl(port, token))
    assert.equal((await again.call('whoami', {})).peerId, a.ready.peerId, 'the server lives on')
    again.close()
  })

  void it('refuses upgrades without the token, with a wrong one, or from a foreign Origin (401), dispatching nothing', { timeout: 30_000 }, async () => {
    const { port, token } = baseOf(a)
    const wrong = randomBytes(32).toString('base64url')
    for (const [url, origin] of [
      [apiUrl(port), undefined],
      [apiUrl(port, ''), undefined],
      [apiUrl(port, wrong), undefined],
      [apiUrl(port, token.slice(0, -1)), undefined],
      [apiUrl(port, token), 'http://evil.example'],
      [apiUrl(port, token), `http://localhost:${port}`],
      [apiUrl(port, token), 'null']
    ] as Array<[string, string | undefined]>) {
      await assert.rejects(ApiSocket.open(url, origin), (err: RefusedError) => err.status === 401, `${url} origin ${String(origin)}`)
    }
    // the page's own origin is fine
    const own = await ApiSocket.open(apiUrl(port, token), `http://127.0.0.1:${port}`)
    own.close()

    // a frame sent right behind a refused upgrade is never dispatched
    const mallory = { id: 1, cmd: 'name.set', name: 'Mallory' }
    for (const [path, headers, status] of [
      ['/api', {}, 401],
      [`/api?token=${wrong}`, {}, 401],
      [`/api?token=${token}`, { Origin: 'http://evil.example' }, 401],
      [`/api?token=${token}`, { Host: `localhost:${port}` }, 401],
      [`/elsewhere?token=${token}`, {}, 404]
    ] as Array<[string, Record<string, string>, number]>) {
      const reply = await upgradeWithFrame(port, path, headers, mallory)
      assert.match(reply, new RegExp(`^HTTP/1\\.1 ${status} `), `${path} ${JSON.stringify(headers)}: ${reply}`)
    }
    const s = await ApiSocket.open(apiUrl(port, token))
    try {
      assert.notEqual((await s.call('whoami', {})).name, 'Mallory')
    } finally {
      s.close()
    }
  })

  void it('serves the built renderer with content types, GET/HEAD only, no token inside, no way out of its folder', { timeout: 30_000 }, async () => {
    const { port, token } = baseOf(a)
    const index = await http(port, '/')
    assert.equal(index.status, 200)
    assert.equal(index.headers['content-type'], 'text/html; charset=utf-8')
    assert.match(index.body, /<div id="root">/)
    assert.match(String(index.headers['content-security-policy']), /frame-ancestors 'none'/)
    assert.equal(index.headers['x-content-type-options'], 'nosniff')
    assert.equal((await http(port, '/index.html')).body, index.body)
    // Vite's output: the page names its script and stylesheet under ./assets/ (hashed names)
    const jsPath = /<script type="module" crossorigin src="\.(\/assets\/[\w.-]+\.js)">/.exec(index.body)?.[1]
    const cssPath = /<link rel="stylesheet" crossorigin href="\.(\/assets\/[\w.-]+\.css)">/.exec(index.body)?.[1]
    assert.ok(jsPath !== undefined && cssPath !== undefined, index.body)
    const js = await http(port, jsPath)
    assert.equal(js.status, 200)
    assert.equal(js.headers['content-type'], 'text/javascript; charset=utf-8')
    const css = await http(port, `${cssPath}?v=1`)
    assert.equal(css.headers['content-type'], 'text/css; charset=utf-8')
    for (const body of [index.body, js.body, css.body]) assert.ok(!body.includes(token), 'no served file carries the token')

    const head = await http(port, '/', 'HEAD')
    assert.equal(head.status, 200)
    assert.equal(head.body, '')
    assert.equal(head.headers['content-length'], String(Buffer.byteLength(index.body)))
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS']) {
      const r = await http(port, '/', method)
      assert.equal(r.status, 405, method)
      assert.equal(r.headers.allow, 'GET, HEAD')
    }
    assert.equal((await http(port, '/missing.js')).status, 404)
    assert.equal((await http(port, '/', 'GET', { Host: `evil.example:${port}` })).status, 400, 'DNS rebinding: a foreign Host gets nothing')

    for (const path of [
      '/../package.json', '/../../package.json', '/%2e%2e/package.json', '/%2E%2E/%2E%2E/package.json',
      '/..%2fpackage.json', '/..%2Fpackage.json', '/%2e%2e%2fpackage.json', '/.%2e/package.json',
      '/..%5cpackage.json', '/..\\package.json', '/assets/../../package.json', '/index.html/../../package.json', '/static/../../../../etc/passwd',
      '/%00', '/index.html%00.js', '/%zz', '/./index.html', 'package.json', '/.hidden', '/%2e%2e%2f%2e%2e%2f%2e%2e%2fpackage.json'
    ]) {
      const r = await http(port, path)
      assert.ok(r.status === 400 || r.status === 404, `${path}: ${r.status}`)
      assert.ok(!r.body.includes('"name"') && !r.body.includes('root:'), `${path} leaked a file`)
    }
  })

  void it('pushes events: B sees A\'s DM arrive, A sees it delivered', { timeout: 40_000 }, async () => {
    const sa = await ApiSocket.open(apiUrl(baseOf(a).port, baseOf(a).token))
    const sb = await ApiSocket.open(apiUrl(baseOf(b).port, baseOf(b).token))
    try {
      const invite = (await sb.call('whoami', {})).invite
      const contact = await sa.call('contact.add', { invite })
      assert.equal(contact.peerId, b.ready.peerId)
      const sent = await sa.call('dm.send', { to: b.ready.peerId, text: 'hello over the web shell' })
      const msg = await sb.waitFor((f) => f.event === 'message' && f.id === sent.id, 30_000, 'the message event at B')
      assert.equal(msg.text, 'hello over the web shell')
      assert.equal(msg.from, a.ready.peerId)
      await sa.waitFor((f) => f.event === 'status' && f.id === sent.id && f.status === 'delivered', 30_000, 'delivered at A')
      // B learned about A as an inbound contact, pushed as an event too
      await sb.waitFor((f) => f.event === 'contact', 10_000, 'contact event at B')
      // every socket gets the events: a second one opened on B sees the reply's status
      const sb2 = await ApiSocket.open(apiUrl(baseOf(b).port, baseOf(b).token))
      const reply = await sb.call('dm.send', { to: a.ready.peerId, text: 'hi Ada' })
      await sb2.waitFor((f) => f.event === 'status' && f.id === reply.id && f.status === 'delivered', 30_000, 'status at the second socket')
      sb2.close()
    } finally {
      sa.close()
      sb.close()
    }
  })

  void it('stops cleanly on SIGTERM: sockets closed (1001), exit 0', { timeout: 30_000 }, async () => {
    const s = await ApiSocket.open(apiUrl(baseOf(a).port, baseOf(a).token))
    await s.call('whoami', {})
    await Promise.all([a.terminate(), b.terminate()])
    const deadline = Date.now() + 5000
    while (s.closed === undefined && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
    assert.deepEqual(s.closed, { code: 1001 })
  })
})

void describe('web shell static files (in-process server over a temp dir)', () => {
  let dir: string
  let outside: string
  let server: WebShellServer
  const api: WebShellApi = { dispatch: async () => ({}), on: () => () => {} }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'parley-web-static-'))
    outside = await mkdtemp(join(tmpdir(), 'parley-web-outside-'))
    await writeFile(join(outside, 'secret.txt'), 'secret')
    await writeFile(join(dir, 'index.html'), '<!doctype html><title>t</title>')
    await mkdir(join(dir, 'assets'))
    await writeFile(join(dir, 'assets', 'a.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>')
    await writeFile(join(dir, 'assets', 'blob.bin'), 'x')
    await mkdir(join(dir, 'empty'))
    await symlink(join(outside, 'secret.txt'), join(dir, 'leak.txt'))
    await symlink(outside, join(dir, 'out'))
    server = new WebShellServer(api, { staticDir: dir })
    await server.start()
  })
  after(async () => {
    await server.stop()
    await rm(dir, { recursive: true, force: true })
    await rm(outside, { recursive: true, force: true })
  })

  void it('lists no directory, follows no symlink out, types by extension', async () => {
    const port = server.port
    assert.match(server.url, new RegExp(`^http://127\\.0\\.0\\.1:${port}/#token=[A-Za-z0-9_-]{43}$`))
    assert.equal((await http(port, '/assets/a.svg')).headers['content-type'], 'image/svg+xml')
    assert.equal((await http(port, '/assets/blob.bin')).headers['content-type'], 'application/octet-stream')
    for (const path of ['/assets', '/assets/', '/empty/', '/leak.txt', '/out/secret.txt', '/out/']) {
      const r = await http(port, path)
      assert.equal(r.status, 404, path)
      assert.ok(!r.body.includes('secret') && !r.body.includes('a.svg'), path)
    }
  })

  void it('maps request targets to segments, refusing the rest', () => {
    assert.deepEqual(staticTarget('/'), ['index.html'])
    assert.deepEqual(staticTarget('/a/b.js?x=1#f'), ['a', 'b.js'])
    assert.deepEqual(staticTarget('/a//b.js'), ['a', 'b.js'])
    assert.deepEqual(staticTarget('/a%20b.js'), ['a b.js'])
    for (const bad of ['/..', '/../x', '/%2e%2e/x', '/a%2fb', '/a%5cb', '/%00', '/%e0%a4%a', 'x', 'http://h/x', '/a/./b']) {
      assert.equal(staticTarget(bad), 400, bad)
    }
    assert.equal(staticTarget('/.env'), 404)
  })
})

interface Run { code: number | null, stdout: string, stderr: string }

/** Runs `parley <args>`; once `stopWhen` matches stdout, sends SIGTERM. */
async function runParley (args: string[], env: Record<string, string>, stopWhen?: RegExp): Promise<Run> {
  const child = spawn(process.execPath, [PARLEY_BIN, ...args], { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => {
    stdout += c
    if (stopWhen?.test(stdout) === true) child.kill('SIGTERM')
  })
  child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
  const timer = setTimeout(() => { child.kill('SIGKILL') }, 20_000)
  const code = await new Promise<number | null>((resolve) => { child.once('exit', (c) => { resolve(c) }) })
  clearTimeout(timer)
  return { code, stdout, stderr }
}

void describe('parley start and bad options', () => {
  void it('npm start: says in one line that Electron is not available and runs the web shell with data in ~/.parley', { timeout: 30_000 }, async () => {
    const home = await makeTempDir('parley-web-home-')
    try {
      // No Electron binary under the override, even on a machine where one is installed.
      const r = await runParley(['start', '--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0'], { HOME: home, ELECTRON_OVERRIDE_DIST_PATH: home }, /"event":"ready"/)
      assert.equal(r.code, 0, r.stderr)
      const ready = JSON.parse(r.stdout.split('\n')[0] as string) as Frame
      assert.equal(ready.event, 'ready')
      const lines = r.stderr.split('\n').filter((l) => l.includes('Electron'))
      assert.equal(lines.length, 1, r.stderr)
      assert.equal(lines[0], `parley: the Electron desktop app is not available here (no Electron binary at ${join(home, 'electron')} (ELECTRON_OVERRIDE_DIST_PATH); run "npx install-electron" with network access); starting the web shell instead: ${String(ready.url)}`)
      assert.ok(existsSync(join(home, '.parley', 'identity.key')), 'data in ~/.parley')
    } finally {
      await rm(home, { recursive: true, force: true })
    }
  })

  void it('exits 2 on bad options and 1 (with an error line) when the port is taken', { timeout: 30_000 }, async () => {
    const bad = [['--port', '70000'], ['--port', 'x'], ['--port', '-1'], ['--bogus']]
    const runs = await Promise.all(bad.map(async (args) => await runParley(['web', ...args], {})))
    for (const [i, r] of runs.entries()) {
      assert.equal(r.code, 2, `${(bad[i] as string[]).join(' ')}: ${r.stderr}`)
      assert.match(r.stderr, /usage: parley web/)
    }
    const busy = createServer()
    await new Promise<void>((resolve) => { busy.listen(0, '127.0.0.1', resolve) })
    const data = await makeTempDir()
    try {
      const port = (busy.address() as { port: number }).port
      const r = await runParley(['web', '--data', data, '--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0', '--port', String(port)], {})
      assert.equal(r.code, 1, r.stderr)
      const line = JSON.parse(r.stdout.trim()) as { event: string, error: ErrorShape }
      assert.equal(line.event, 'error')
      assert.equal(line.error.name, 'WebShellListenError')
    } finally {
      busy.close()
      await rm(data, { recursive: true, force: true })
    }
  })
})

