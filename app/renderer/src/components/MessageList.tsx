import { Fragment, useLayoutEffect, useRef } from 'react'
import type { GroupMessageView, MessageView } from '../../../../core/api/contract.js'
import { dayLabel, sameDay, shortId, timeOfDay } from '../format.js'
import type { Thread } from '../model.js'
import { Icon } from './Icon.js'

interface Props {
  thread: Thread | undefined
  isGroup: boolean
  /** Display names by peer id (group senders). */
  names: Map<string, string>
  onLoadOlder: () => void
}

/** Messages oldest to newest with day separators; scrolling to the top loads older ones. */
export function MessageList ({ thread, isGroup, names, onLoadOlder }: Props): React.JSX.Element {
  const ref = useRef<HTMLDivElement>(null)
  const messages = thread?.messages ?? []
  const first = messages[0]?.id
  const last = messages[messages.length - 1]?.id
  const prev = useRef<{ first: string | undefined, last: string | undefined, height: number, top: number }>({ first: undefined, last: undefined, height: 0, top: 0 })

  // Older messages prepended: keep what the reader sees in place. A new last message: follow it
  // if the reader was at the bottom (or it is ours).
  useLayoutEffect(() => {
    const el = ref.current
    if (el === null) return
    const p = prev.current
    const newest = messages[messages.length - 1]
    if (p.first !== undefined && first !== p.first && last === p.last) {
      el.scrollTop = p.top + (el.scrollHeight - p.height)
    } else if (last !== p.last) {
      const wasAtBottom = p.last === undefined || p.height - p.top - el.clientHeight < 120
      if (wasAtBottom || newest?.direction === 'out') el.scrollTop = el.scrollHeight
    }
    prev.current = { first, last, height: el.scrollHeight, top: el.scrollTop }
  })

  const onScroll = (): void => {
    const el = ref.current
    if (el === null) return
    prev.current = { ...prev.current, height: el.scrollHeight, top: el.scrollTop }
    if (el.scrollTop < 80 && thread?.hasMore === true && !thread.loading) onLoadOlder()
  }

  return (
    <div ref={ref} className="messages" role="log" aria-label="Messages" tabIndex={0} onScroll={onScroll}>
      {thread?.hasMore === true && (
        <button type="button" className="load-older" disabled={thread.loading} onClick={onLoadOlder}>
          {thread.loading ? 'Loading…' : 'Load older messages'}
        </button>
      )}
      {thread !== undefined && !thread.loading && messages.length === 0 && <p className="hint">No messages yet. Say hello!</p>}
      {messages.map((m, i) => {
        const before = messages[i - 1]
        const newDay = before === undefined || !sameDay(before.sentAt, m.sentAt)
        const showSender = isGroup && m.direction === 'in' && (before === undefined || before.from !== m.from || newDay)
        return (
          <Fragment key={m.id}>
            {newDay && <div className="day-separator" role="separator" aria-label={dayLabel(m.sentAt)}><span>{dayLabel(m.sentAt)}</span></div>}
            <MessageBubble message={m} sender={showSender ? names.get(m.from) || shortId(m.from) : undefined} />
          </Fragment>
        )
      })}
    </div>
  )
}

// Pending is drawn (the stopwatch emoji is missing from common Linux fonts); the rest are text.
const STATUS: Record<string, { icon: string | React.JSX.Element, label: string, title: string }> = {
  pending: { icon: <Icon name="clock" size={12} />, label: 'Pending', title: 'Waiting to be sent: in the outbox' },
  sent: { icon: '✓', label: 'Sent', title: 'Sent: on its way or waiting in the relay\'s mailbox' },
  delivered: { icon: '✓✓', label: 'Delivered', title: 'Delivered to their device' },
  failed: { icon: '⚠', label: 'Failed', title: 'Could not be sent' }
}

/**
 * One message. Its parts (sender, body, meta) leave room for attachments above the text and
 * reactions below it.
 */
function MessageBubble ({ message: m, sender }: { message: MessageView | GroupMessageView, sender: string | undefined }): React.JSX.Element {
  const status = m.direction === 'out' ? STATUS[m.status] : undefined
  const who = m.direction === 'out' ? 'You' : (sender ?? 'Them')
  return (
    <article className={`bubble ${m.direction}${m.status === 'failed' ? ' failed' : ''}`} aria-label={`Message from ${who}`}>
      {sender !== undefined && <div className="bubble-sender">{sender}</div>}
      {/* attachments go here */}
      <div className="bubble-text">{m.text}</div>
      <div className="bubble-meta">
        <time dateTime={new Date(m.sentAt).toISOString()}>{timeOfDay(m.sentAt)}</time>
        {status !== undefined && <span className={`ticks ${m.status}`} role="img" aria-label={status.label} title={status.title}>{status.icon}</span>}
      </div>
      {/* reactions go here */}
    </article>
  )
}
