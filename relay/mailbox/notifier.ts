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
 * deposit for it and whenever it connects; at most once a second per recipient. A deposit
 * inside that second is not dropped: one more notice goes when the second is over, if mail
 * still waits then (the recipient may have fetched in between). Without it, mail deposited
 * just after a recipient's fetch waited for its next poll (30 s); the chaos simulation
 * (test/sim) found that. Best effort: nodes also fetch on connect and poll, so a lost notice
 * only delays.
 *
 * @example
 * const notifier = new MailboxNotifier(libp2p, store)
 * notifier.start()
 * notifier.notify(recipientPeerId)
 */
export class MailboxNotifier {
  private readonly last = new Map<string, number>()
  /** Trailing notices scheduled for recipients notified less than a second ago. */
  private readonly trailing = new Map<string, ReturnType<typeof setTimeout>>()
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
    for (const timer of this.trailing.values()) clearTimeout(timer)
    this.trailing.clear()
  }

  notify (recipient: string): void {
    const now = Date.now()
    const since = now - (this.last.get(recipient) ?? 0)
    if (since < NOTIFY_INTERVAL_MS) {
      this.notifyLater(recipient, NOTIFY_INTERVAL_MS - since)
      return
    }
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

  /** One notice for `recipient` in `delayMs`, if none is scheduled yet and mail still waits then. */
  private notifyLater (recipient: string, delayMs: number): void {
    if (this.trailing.has(recipient) || this.trailing.size >= MAX_TRAILING) return
    const timer = setTimeout(() => {
      this.trailing.delete(recipient)
      if (this.store.usageOf(recipient).count > 0) this.notify(recipient)
    }, delayMs)
    timer.unref?.()
    this.trailing.set(recipient, timer)
  }
}

/** Trailing notices pending at once at most (each is a timer; a flood of recipients cannot grow this). */
const MAX_TRAILING = 10_000
