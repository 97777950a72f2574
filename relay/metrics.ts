import { createServer, type Server } from 'node:http'
import type { RelayLibp2p } from './relay-node.js'
import type { MailboxService } from './mailbox/service.js'
import type { MailboxStore } from './mailbox/store.js'
import type { DirectoryService } from './directory/service.js'

export interface MailboxParts { store: MailboxStore, mailbox: MailboxService, directory: DirectoryService }

/**
 * The operator's HTTP endpoint: `/health` (200 `{"status":"ok",...}` while the node runs)
 * and `/metrics` (Prometheus text). Bind it to a private address (default 127.0.0.1).
 *
 * @example
 * const server = await serveMetrics(relay, '127.0.0.1', 9090, { store, mailbox, directory })
 */
export async function serveMetrics (node: RelayLibp2p, host: string, port: number, parts: MailboxParts): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET') {
      res.writeHead(405).end()
      return
    }
    if (req.url === '/health') {
      const ok = node.status === 'started'
      res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ status: ok ? 'ok' : node.status, peerId: node.peerId.toString(), connections: node.getConnections().length }))
      return
    }
    if (req.url === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' })
      res.end(renderMetrics(node, parts))
      return
    }
    res.writeHead(404).end()
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { server.off('error', reject); resolve() })
  })
  return server
}

export function renderMetrics (node: RelayLibp2p, parts: MailboxParts): string {
  const lines: string[] = []
  const gauge = (name: string, help: string, value: number): void => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name} ${value}`)
  }
  const counter = (name: string, help: string, value: number): void => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`, `${name} ${value}`)
  }
  const byReason = (name: string, help: string, counts: ReadonlyMap<string, number>): void => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`)
    for (const [reason, n] of counts) lines.push(`${name}{reason="${reason}"} ${n}`)
  }
  const conns = node.getConnections()
  gauge('parley_relay_connections', 'Open libp2p connections.', conns.length)
  gauge('parley_relay_peers', 'Distinct connected peers.', new Set(conns.map((c) => c.remotePeer.toString())).size)
  gauge('parley_relay_reservations', 'Circuit relay reservations held now.', node.services.relay.reservations.size)
  const totals = parts.store.totals()
  const stats = parts.mailbox.stats
  gauge('parley_mailbox_items', 'Envelopes waiting in mailboxes.', totals.count)
  gauge('parley_mailbox_bytes', 'Bytes of envelopes waiting in mailboxes.', totals.bytes)
  gauge('parley_mailbox_recipients', 'Recipients with mail waiting.', totals.recipients)
  counter('parley_mailbox_deposits_total', 'Envelopes accepted.', stats.deposits)
  counter('parley_mailbox_fetches_total', 'FETCH requests answered.', stats.fetches)
  counter('parley_mailbox_acked_total', 'Envelopes deleted by their recipient.', stats.acked)
  counter('parley_mailbox_expired_total', 'Envelopes deleted unread at their TTL.', stats.expired)
  byReason('parley_mailbox_refused_total', 'Deposits and requests refused, by reason.', stats.refused)
  counter('parley_directory_lookups_total', 'Directory lookups answered.', parts.directory.stats.lookups)
  counter('parley_directory_found_total', 'Directory lookups that returned a record.', parts.directory.stats.found)
  const prekeys = node.services.prekeys
  if (prekeys !== undefined) {
    const held = prekeys.store.totals()
    const served = prekeys.server.stats
    gauge('parley_prekeys_owners', 'Owners whose prekey bundle is stored.', held.owners)
    gauge('parley_prekeys_one_time_keys', 'One-time prekeys stored, all owners.', held.oneTimeKeys)
    counter('parley_prekeys_publishes_total', 'Bundles published (headers stored).', served.publishes)
    counter('parley_prekeys_fetches_total', 'FETCH requests answered.', served.fetches)
    counter('parley_prekeys_one_time_handed_out_total', 'One-time prekeys handed out (each once).', prekeys.stats.handedOut)
    counter('parley_prekeys_withheld_total', 'FETCHes answered without a one-time prekey: requester over its claim budget.', prekeys.stats.withheld)
    byReason('parley_prekeys_refused_total', 'Prekey requests refused and streams reset, by reason.', served.refused)
  }
  return lines.join('\n') + '\n'
}
