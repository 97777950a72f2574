import type { MessengerEvent } from '../../core/api/contract.js'

/** Longest notification body; the rest of a long message is cut with an ellipsis. */
export const MAX_NOTIFICATION_BODY = 140

export interface NotificationText {
  title: string
  body: string
  /** The conversation (peer id) or group to open when the notification is clicked. */
  conversation: string
}

/** Names to show instead of peer and group ids. */
export interface Names {
  contact(peerId: string): string | undefined
  group(groupId: string): string | undefined
}

/**
 * The native notification for an event, or undefined if it gets none: only incoming chat
 * messages (1:1 and group), and only while the window is not focused (the caller decides).
 */
export function notificationFor (event: MessengerEvent, names: Names): NotificationText | undefined {
  switch (event.event) {
    case 'message':
      return { title: names.contact(event.from) ?? shortId(event.from), body: clip(event.text), conversation: event.conversation }
    case 'group.message': {
      const group = names.group(event.group) ?? 'Group'
      const from = names.contact(event.from) ?? shortId(event.from)
      return { title: `${from} in ${group}`, body: clip(event.text), conversation: event.group }
    }
    case 'group.invite':
      return { title: names.contact(event.from) ?? shortId(event.from), body: clip(`added you to the group ${event.name}`), conversation: event.group }
    default:
      return undefined
  }
}

function shortId (peerId: string): string {
  return peerId.length > 12 ? `${peerId.slice(0, 4)}…${peerId.slice(-6)}` : peerId
}

function clip (text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim()
  const chars = [...flat]
  return chars.length > MAX_NOTIFICATION_BODY ? chars.slice(0, MAX_NOTIFICATION_BODY - 1).join('') + '…' : flat
}
