import '../../core/polyfill.js'
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

// Real mDNS between two real nodes, with no relay and no address exchange. It runs in a
// network namespace of its own whose only interface is loopback (multicast routed to it),
// so the multicast queries never leave this machine's sandbox. Needs root and iproute2,
// which .ci/run provides.
const fixture = fileURLToPath(new URL('../fixtures/mdns-pair.js', import.meta.url))
const settingFixture = fileURLToPath(new URL('../fixtures/mdns-setting.js', import.meta.url))
const ns = `parley-mdns-${process.pid}`

function ip (...args: string[]): void {
  execFileSync('ip', args, { stdio: 'pipe' })
}

function runInNamespace (mode: 'on' | 'off'): { delivered: boolean, copies: number, pending: number } {
  const out = execFileSync('ip', ['netns', 'exec', ns, process.execPath, fixture, mode], { encoding: 'utf8', timeout: 60_000 })
  const line = out.trim().split('\n').pop() ?? ''
  return JSON.parse(line) as { delivered: boolean, copies: number, pending: number }
}

describe('LAN discovery with mDNS (private network namespace)', () => {
  before(() => {
    ip('netns', 'add', ns)
    ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up')
    ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'multicast', 'on')
    ip('netns', 'exec', ns, 'ip', 'route', 'add', '224.0.0.0/4', 'dev', 'lo')
  })

  after(() => {
    ip('netns', 'del', ns)
  })

  it('delivers to a contact whose address only mDNS knows', () => {
    const r = runInNamespace('on')
    assert.equal(r.delivered, true, 'delivered after mDNS discovery')
    assert.equal(r.copies, 1, 'shown once')
    assert.equal(r.pending, 0)
  })

  it('the lanDiscovery setting: off when stored, on and off again while running', () => {
    const out = execFileSync('ip', ['netns', 'exec', ns, process.execPath, settingFixture], { encoding: 'utf8', timeout: 90_000 })
    const r = JSON.parse(out.trim().split('\n').pop() ?? '') as { hiddenWhenStored: boolean, foundAfterOn: boolean, hiddenAfterOff: boolean }
    assert.equal(r.hiddenWhenStored, true, 'stored off: a node on the same LAN does not find it')
    assert.equal(r.foundAfterOn, true, 'switched on while running: found and delivered')
    assert.equal(r.hiddenAfterOff, true, 'switched off while running: a new node does not find it')
  })

  it('finds nobody with mDNS switched off', () => {
    const r = runInNamespace('off')
    assert.equal(r.delivered, false)
    assert.equal(r.pending, 1, 'still waiting in the outbox')
  })
})
