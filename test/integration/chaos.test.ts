import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import { afterEach, beforeEach, describe, it } from 'node:test'
import { Cluster } from '../helpers/node-process.js'
import { runChaos } from '../sim/chaos.js'

// The short variant of `npm run sim` (test/sim/chaos.ts): real `parley node` processes and a
// real relay on 127.0.0.1, SIGKILL and restart on the same data dir.

let cluster: Cluster

beforeEach(() => { cluster = new Cluster() })
afterEach(async () => { await cluster.cleanup() })

describe('chaos: peers killed -9 and restarted while DMs flow', () => {
  it('10 peers, 2,000 DMs, 30% of the peers killed at random: nothing acknowledged lost, nothing shown twice, order kept, every receipt back', { timeout: 180_000 }, async () => {
    const seed = Math.floor(Math.random() * 1_000_000)
    const log: string[] = []
    const report = await runChaos({
      peers: 10,
      messages: 2000,
      killFraction: 0.3,
      killEveryMs: 700,
      downMs: { min: 200, max: 1500 },
      contactsPerPeer: 4,
      sendGapMs: 0,
      seed,
      settleTimeoutMs: 60_000,
      log: (line) => { log.push(line) }
    }, cluster)
    const context = `seed ${seed}: ${JSON.stringify(report)}\n${log.join('\n')}`
    assert.equal(report.victims, 3)
    assert.ok(report.kills >= 2, `only ${report.kills} kills (${context})`)
    assert.equal(report.messages, 2000)
    assert.ok(report.acknowledged >= 2000 - report.kills, context)
    assert.equal(report.settled, true, context)
    assert.equal(report.lost, 0, context)
    assert.equal(report.shownTwice, 0, context)
    assert.equal(report.outOfOrder, 0, context)
    assert.equal(report.notDeliveredAtSender, 0, context)
    assert.ok(report.unansweredDelivered <= report.unanswered)
  })
})
