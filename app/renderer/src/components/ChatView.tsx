import { useEffect, useState } from 'react'
import type { ContactView, GroupMemberView, GroupMessageView, MessageView, WhoAmI } from '../../../../core/api/contract.js'
import type { AppActions } from '../actions.js'
import type { ConversationItem, Thread } from '../model.js'
import { Avatar, PersonAvatar } from './Avatar.js'
import { Composer } from './Composer.js'
import { MessageList } from './MessageList.js'

interface Props {
  item: ConversationItem
  me: WhoAmI
  /** All contacts, for the names of group senders. */
  contacts: ContactView[]
  thread: Thread | undefined
  actions: AppActions
  onLoadOlder: () => void
  onSent: (m: MessageView | GroupMessageView) => void
  onContact: (c: ContactView) => void
  onInfo: () => void
  onSafety: () => void
}

/** One conversation: header, the banners that explain its state, messages and the composer. */
export function ChatView ({ item, me, contacts, thread, actions, onLoadOlder, onSent, onContact, onInfo, onSafety }: Props): React.JSX.Element {
  const group = item.group
  const contact = item.contact
  const [members, setMembers] = useState<GroupMemberView[]>([])
  const groupId = group?.group
  const memberCount = group?.members
  useEffect(() => {
    if (groupId === undefined) return
    void actions.run('Loading members', async () => { setMembers((await actions.client.call('group.members', { group: groupId })).members) })
  }, [groupId, memberCount, actions])

  // Senders' names: our contact names, else the member list's (a removed member is in neither then).
  const names = new Map<string, string>(contacts.map((c) => [c.peerId, c.name]))
  for (const m of members) if (m.name !== '' && !names.has(m.peerId)) names.set(m.peerId, m.name)
  names.set(me.peerId, 'You')
  const canSend = group === undefined ? contact !== undefined : group.state === 'joined'

  const send = async (text: string): Promise<boolean> => {
    const sent = await actions.run('Sending', async () => group !== undefined
      ? await actions.client.call('group.send', { group: group.group, text })
      : await actions.client.call('dm.send', { to: item.id, text }))
    if (sent === undefined) return false
    onSent(sent)
    return true
  }

  const subtitle = group !== undefined
    ? `${group.members} member${group.members === 1 ? '' : 's'}`
    : item.connected === true ? 'connected' : 'not connected'

  return (
    <section className="chat" aria-label={`Conversation with ${item.name}`}>
      <header className="chat-header">
        {group !== undefined
          ? <Avatar name={item.name} group />
          : <PersonAvatar client={actions.client} peerId={item.id} hash={contact?.avatar} name={item.name} online={item.connected === true} />}
        <div className="chat-title">
          <h1>{item.name}</h1>
          <span className="chat-subtitle">{subtitle}{contact?.identity === 'verified' ? ' · verified ✔' : ''}</span>
          {/* room for presence and typing indicators */}
        </div>
        <div className="toolbar">
          {group !== undefined
            ? <button type="button" onClick={onInfo}>Group info</button>
            : <button type="button" onClick={onSafety}>Safety number</button>}
        </div>
      </header>

      {contact?.identity === 'changed' && (
        <div className="banner warning" role="alert">
          <span><strong>{item.name}'s safety number has changed.</strong> They may have reinstalled Parley, or someone may be trying to intercept your messages. Messages to them are held until you accept the new number. Compare it with them first.</span>
          <span className="row">
            <button type="button" onClick={onSafety}>View safety number</button>
            <button type="button" onClick={() => {
              void actions.run('Accepting the new safety number', async () => { onContact(await actions.client.call('contact.acceptIdentity', { peerId: contact.peerId })) })
            }}>Accept</button>
          </span>
        </div>
      )}
      {group === undefined && item.connected !== true && (
        <div className="banner info" role="status">
          {item.name} is not connected. Your messages wait in the outbox or in the relay's mailbox and are delivered when {item.name} is back online.
        </div>
      )}
      {group?.state === 'left' && <div className="banner info" role="status">You are no longer a member of this group.</div>}
      {group?.state === 'invited' && <div className="banner info" role="status">Accept the invitation (in the conversation list) to read and write in this group.</div>}

      <MessageList thread={thread} isGroup={group !== undefined} names={names} onLoadOlder={onLoadOlder} />
      <Composer key={item.key} disabled={!canSend} onSend={send} label={`Message ${item.name}`} />
    </section>
  )
}
