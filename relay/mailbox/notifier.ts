import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p } from '@libp2p/interface'
import { forComponent } from '../../core/logger.js'
import { sendFrames } from '../../core/protocols/framing.js'
import { MAILBOX_NOTIFY_PROTOCOL, NOTIFY_INTERVAL_MS } from '../../core/protocols/mailbox/constants.js'
import { MailboxNotice } from '../../core/protocols/mailbox/pb/mailbox.js'
import type { MailboxStore } from './store.js'

const log = forComponent('relay:notify')

/**
 * Tells a recipient that is connected to this relay that mail is waiting, right after a
 * deposit for it and whenever it connects; at most once a second per recipient. Best
 * effort: nodes also fetch on connect and poll, so a lost notice only delays.
 *
 * @example
 * const notifier = new MailboxNotifier(libp2p, store)
 * notifier.start()
 * notifier.notify(recipientPeerId)
 */
export class MailboxNotifier {
  private readonly last = new Map<string, number>()
  private readonly onConnect = (evt: CustomEvent<{ toString: () => string }>): void => {
    const peer = evt.detail.toString()
    if (this.store.usageOf(peer).count > 0) this.notify(peer)
  }

  constructor (private readonly node: Pick<Libp2p, 'dialProtocol' | 'getConnections' | 'addEventListener' | 'removeEventListener'>,
    private readonly store: MailboxStore) {}

  start (): void {
    this.node.addEventListener('peer:connect', this.onConnect)
  }

  stop (): void {
    this.node.removeEventListener('peer:connect', this.onConnect)
  }

  notify (recipient: string): void {
    const now = Date.now()
    if (now - (this.last.get(recipient) ?? 0) < NOTIFY_INTERVAL_MS) return
    let id
    try {
      id = peerIdFromString(recipient)
    } catch {
      return
    }
    if (this.node.getConnections(id).length === 0) return // not here: it fetches when it comes
    this.last.set(recipient, now)
    if (this.last.size > 100_000) this.last.clear()
    const waiting = this.store.usageOf(recipient).count
    this.node.dialProtocol(id, MAILBOX_NOTIFY_PROTOCOL, { runOnLimitedConnection: true, signal: AbortSignal.timeout(5000) })
      .then(async (stream) => {
        await sendFrames(stream, [MailboxNotice.encode({ waiting })])
        await stream.close()
      })
      .catch((err: unknown) => { log('notifying %s failed: %s', recipient, (err as Error).message) })
  }
}
