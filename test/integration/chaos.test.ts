import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import { afterEach, beforeEach, describe, it } from 'node:test'
import { Cluster } from '../helpers/node-process.js'
import { runChaos, type ChaosOptions, type ChaosReport } from '../sim/chaos.js'

// The short variants of `npm run sim` (test/sim/chaos.ts): real `parley node` processes and a
// real relay on 127.0.0.1, SIGKILL and restart on the same data dir.

let cluster: Cluster

beforeEach(() => { cluster = new Cluster() })
afterEach(async () => { await cluster.cleanup() })

/**
 * One run with a random seed (printed on failure with the report and the run's log) and the
 * settings both variants share; then the checks every run must pass.
 */
async function chaos (o: Pick<ChaosOptions, 'scenario' | 'peers' | 'messages' | 'killEveryMs' | 'contactsPerPeer'>): Promise<{ report: ChaosReport, context: string }> {
  const seed = Math.floor(Math.random() * 1_000_000)
  const log: string[] = []
  const report = await runChaos({
    ...o,
    killFraction: 0.3,
    downMs: { min: 200, max: 1500 },
    sendGapMs: 0,
    seed,
    settleTimeoutMs: 60_000,
    log: (line) => { log.push(line) }
  }, cluster)
  const context = `seed ${seed}: ${JSON.stringify(report)}\n${log.join('\n')}`
  assert.equal(report.messages, o.messages)
  assert.ok(report.kills >= 1, `no kills (${context})`)
  assert.equal(report.settled, true, context)
  assert.equal(report.lost, 0, context)
  assert.equal(report.shownTwice, 0, context)
  assert.equal(report.outOfOrder, 0, context)
  assert.ok(report.unansweredDelivered <= report.unanswered)
  return { report, context }
}

describe('chaos: peers killed -9 and restarted while messages flow', () => {
  it('10 peers, 2,000 DMs, 30% of the peers killed at random: nothing acknowledged lost, nothing shown twice, order kept, every receipt back', { timeout: 180_000 }, async () => {
    const { report, context } = await chaos({ scenario: 'dm', peers: 10, messages: 2000, killEveryMs: 700, contactsPerPeer: 4 })
    assert.equal(report.victims, 3)
    assert.ok(report.acknowledged >= 2000 - report.kills, context)
    assert.equal(report.notDeliveredAtSender, 0, context)
  })

  it('8 members of one group, 300 group messages, 30% of the members killed at random: every acknowledged message at every member once, per-author order kept, all in one order', { timeout: 180_000 }, async () => {
    const { report, context } = await chaos({ scenario: 'group', peers: 8, messages: 300, killEveryMs: 1000, contactsPerPeer: 0 })
    assert.equal(report.victims, 2)
    assert.equal(report.divergent, 0, context)
  })
})
