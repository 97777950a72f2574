import type { AppActions } from '../actions.js'
import { listTime } from '../format.js'
import type { ConversationItem, ConversationKey } from '../model.js'
import type { ParleyClient } from '../client.js'
import { Avatar, PersonAvatar } from './Avatar.js'

interface Props {
  items: ConversationItem[]
  selected: ConversationKey | undefined
  onOpen: (key: ConversationKey) => void
  actions: AppActions
  onChanged: () => void
}

/** Chats and groups, newest first, with the last message, its time and the unread count. */
export function ConversationList ({ items, selected, onOpen, actions, onChanged }: Props): React.JSX.Element {
  if (items.length === 0) {
    return <p className="hint">No conversations yet. Add a contact with their invite, or share yours.</p>
  }
  return (
    <ul className="conversation-list" aria-label="Conversation list">
      {items.map((item) => (
        <li key={item.key}>
          {item.group?.state === 'invited'
            ? <InviteRow item={item} actions={actions} onChanged={onChanged} onOpen={onOpen} />
            : <ConversationRow item={item} selected={item.key === selected} onOpen={onOpen} client={actions.client} />}
        </li>
      ))}
    </ul>
  )
}

function ConversationRow ({ item, selected, onOpen, client }: { item: ConversationItem, selected: boolean, onOpen: (key: ConversationKey) => void, client: ParleyClient }): React.JSX.Element {
  const last = item.last
  const preview = last === undefined ? (item.kind === 'group' ? 'Group created' : 'No messages yet') : `${last.direction === 'out' ? 'You: ' : ''}${last.text}`
  const label = `${item.name}${item.kind === 'group' ? ' (group)' : ''}${item.unread > 0 ? `, ${item.unread} unread` : ''}`
  return (
    <button type="button" className={selected ? 'conversation selected' : 'conversation'} aria-current={selected ? 'true' : undefined} aria-label={label} onClick={() => { onOpen(item.key) }}>
      {item.kind === 'group'
        ? <Avatar name={item.name} group />
        : <PersonAvatar client={client} peerId={item.id} hash={item.contact?.avatar} name={item.name} online={item.connected === true} />}
      <span className="conversation-text">
        <span className="conversation-top">
          <span className="conversation-name">{item.name}</span>
          {last !== undefined && <time className="conversation-time" dateTime={new Date(last.sentAt).toISOString()}>{listTime(last.sentAt)}</time>}
        </span>
        <span className="conversation-bottom">
          <span className="conversation-preview">{item.group?.state === 'left' ? 'You are no longer in this group' : preview}</span>
          {item.unread > 0 && <span className="unread" aria-label={`${item.unread} unread`}>{item.unread}</span>}
        </span>
      </span>
    </button>
  )
}

function InviteRow ({ item, actions, onChanged, onOpen }: { item: ConversationItem, actions: AppActions, onChanged: () => void, onOpen: (key: ConversationKey) => void }): React.JSX.Element {
  const answer = async (accept: boolean): Promise<void> => {
    const r = await actions.run(accept ? 'Joining the group' : 'Declining the invitation', async () =>
      await actions.client.call(accept ? 'group.accept' : 'group.decline', { group: item.id }))
    onChanged()
    if (r !== undefined && accept) onOpen(item.key)
  }
  return (
    <div className="conversation invite" role="group" aria-label={`Invitation to ${item.name}`}>
      <Avatar name={item.name} group />
      <span className="conversation-text">
        <span className="conversation-name">{item.name}</span>
        <span className="conversation-preview">You are invited to this group</span>
        <span className="row">
          <button type="button" aria-label={`Accept invitation to ${item.name}`} onClick={() => { void answer(true) }}>Accept</button>
          <button type="button" className="secondary" aria-label={`Decline invitation to ${item.name}`} onClick={() => { void answer(false) }}>Decline</button>
        </span>
      </span>
    </div>
  )
}
