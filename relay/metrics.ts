import { createServer, type Server } from 'node:http'
import type { RelayLibp2p } from './relay-node.js'

/**
 * The operator's HTTP endpoint: `/health` (200 `{"status":"ok",...}` while the node runs)
 * and `/metrics` (Prometheus text). Bind it to a private address (default 127.0.0.1).
 *
 * @example
 * const server = await serveMetrics(relay, '127.0.0.1', 9090)
 */
export async function serveMetrics (node: RelayLibp2p, host: string, port: number): Promise<Server> {
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
      res.end(renderMetrics(node))
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

export function renderMetrics (node: RelayLibp2p): string {
  const lines: string[] = []
  const gauge = (name: string, help: string, value: number): void => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name} ${value}`)
  }
  const conns = node.getConnections()
  gauge('parley_relay_connections', 'Open libp2p connections.', conns.length)
  gauge('parley_relay_peers', 'Distinct connected peers.', new Set(conns.map((c) => c.remotePeer.toString())).size)
  gauge('parley_relay_reservations', 'Circuit relay reservations held now.', node.services.relay.reservations.size)
  return lines.join('\n') + '\n'
}
