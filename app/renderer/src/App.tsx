import { useCallback, useEffect, useMemo, useRef, useState } from 'react'
import type { ContactView, ConversationView, GroupMessageView, GroupView, MessageView, MessengerEvent, WhoAmI } from '../../../core/api/contract.js'
import type { AppActions } from './actions.js'
import { ApiError, type ConnectionState, type ParleyClient } from './client.js'
import { ChatView } from './components/ChatView.js'
import { ConnectionBanner } from './components/ConnectionBanner.js'
import { ContactsPanel } from './components/ContactsPanel.js'
import { ConversationList } from './components/ConversationList.js'
import { GroupInfo } from './components/GroupInfo.js'
import { PersonAvatar } from './components/Avatar.js'
import { Icon } from './components/Icon.js'
import { NewGroupDialog } from './components/NewGroupDialog.js'
import { NotificationPrompt } from './components/NotificationPrompt.js'
import { Onboarding } from './components/Onboarding.js'
import { SafetyNumberPanel } from './components/SafetyNumber.js'
import { Settings } from './components/Settings.js'
import { conversationItems, dmKey, groupKey, mergeMessages, PAGE_SIZE, type ConversationKey, type ReadState, type Thread } from './model.js'
import { loadReadState, saveReadState } from './prefs.js'

export type Panel = 'contacts' | 'settings' | 'newGroup' | 'groupInfo' | 'safety'


export function App ({ client }: { client: ParleyClient }): React.JSX.Element {
  const [conn, setConn] = useState<ConnectionState>(client.state)
  const [me, setMe] = useState<WhoAmI>()
  const [contacts, setContacts] = useState<ContactView[]>([])
  const [dms, setDms] = useState<ConversationView[]>([])
  const [groups, setGroups] = useState<GroupView[]>([])
  const [threads, setThreads] = useState<Record<string, Thread>>({})
  const [selected, setSelected] = useState<ConversationKey>()
  const [panel, setPanel] = useState<Panel>()
  const [read, setRead] = useState<Record<string, ReadState>>({})
  const [error, setError] = useState<string>()
  const [onboarding, setOnboarding] = useState(false)

  const selectedRef = useRef(selected)
  selectedRef.current = selected
  const meRef = useRef(me)
  meRef.current = me
  const threadsRef = useRef(threads)
  threadsRef.current = threads

  const run = useCallback(async <T,>(what: string, op: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await op()
    } catch (err) {
      setError(`${what}: ${err instanceof ApiError ? `${err.message} (${err.name})` : (err as Error).message}`)
      return undefined
    }
  }, [])
  const actions = useMemo<AppActions>(() => ({ client, run }), [client, run])

  const refreshLists = useCallback(async () => {
    const [c, d, g] = await Promise.all([client.call('contacts.list', {}), client.call('conversations.list', {}), client.call('groups.list', {})])
    setContacts(c.contacts)
    setDms(d.conversations)
    setGroups(g.groups)
  }, [client])

  // Many events in a burst (a mailbox drained) refresh the lists once.
  const refreshTimer = useRef<number>(undefined)
  const scheduleRefresh = useCallback(() => {
    window.clearTimeout(refreshTimer.current)
    refreshTimer.current = window.setTimeout(() => { void run('Refreshing conversations', refreshLists) }, 80)
  }, [refreshLists, run])

  const loadThread = useCallback(async (key: ConversationKey, older: boolean) => {
    const before = older ? threadsRef.current[key]?.messages[0]?.id : undefined
    setThreads((t) => ({ ...t, [key]: { messages: t[key]?.messages ?? [], hasMore: t[key]?.hasMore ?? true, loading: true } }))
    const [kind, id] = splitKey(key)
    const page = await run('Loading messages', async () => kind === 'dm'
      ? (await client.call('dm.history', { with: id, limit: PAGE_SIZE, ...(before !== undefined ? { before } : {}) })).messages
      : (await client.call('group.history', { group: id, limit: PAGE_SIZE, ...(before !== undefined ? { before } : {}) })).messages)
    setThreads((t) => {
      const cur = t[key]
      const messages = mergeMessages<MessageView | GroupMessageView>(cur?.messages ?? [], page ?? [])
      return { ...t, [key]: { messages, hasMore: page !== undefined && page.length === PAGE_SIZE, loading: false } }
    })
  }, [client, run])

  const markRead = useCallback((key: ConversationKey) => {
    setRead((r) => ({ ...r, [key]: { unread: 0, readUpTo: Date.now() } }))
  }, [])

  // Connection: (re)load everything whenever it opens.
  useEffect(() => {
    const off = client.onState(setConn)
    setConn(client.state) // it may have opened between the first render and now
    return off
  }, [client])
  useEffect(() => {
    if (conn.kind !== 'open') return
    void run('Loading your account', async () => {
      const who = await client.call('whoami', {})
      setMe(who)
      setRead(loadReadState(who.peerId))
      if (who.name === '') setOnboarding(true)
      await refreshLists()
      setThreads({})
      const sel = selectedRef.current
      if (sel !== undefined) await loadThread(sel, false)
    })
  }, [conn.kind, client, run, refreshLists, loadThread])

  useEffect(() => {
    if (me !== undefined) saveReadState(me.peerId, read)
  }, [me, read])

  // Events: messages and statuses into the threads, everything else refreshes the lists.
  useEffect(() => client.onEvent((e: MessengerEvent) => {
    const mine = meRef.current?.peerId
    if (e.event === 'message' || e.event === 'group.message') {
      const key = e.event === 'message' ? dmKey(e.conversation) : groupKey(e.group)
      const m: MessageView = {
        id: e.id, conversation: e.event === 'message' ? e.conversation : e.group, from: e.from,
        direction: e.from === mine ? 'out' : 'in', text: e.text, sentAt: e.sentAt, lamport: e.lamport, status: 'received'
      }
      const msg = e.event === 'group.message' ? { ...m, group: e.group } : m
      setThreads((t) => {
        const cur = t[key]
        return cur === undefined ? t : { ...t, [key]: { ...cur, messages: mergeMessages<MessageView | GroupMessageView>(cur.messages, [msg]) } }
      })
      if (msg.direction === 'in') {
        const visible = selectedRef.current === key && !document.hidden
        if (visible) setRead((r) => ({ ...r, [key]: { unread: 0, readUpTo: Date.now() } }))
        else setRead((r) => ({ ...r, [key]: { unread: (r[key]?.unread ?? 0) + 1, readUpTo: r[key]?.readUpTo ?? 0 } }))
        if (document.hidden) notify(e.event === 'message' ? 'New message' : 'New group message', e.text)
      }
    } else if (e.event === 'status') {
      const key = dmKey(e.conversation)
      setThreads((t) => {
        const cur = t[key]
        if (cur === undefined) return t
        return { ...t, [key]: { ...cur, messages: cur.messages.map((m) => m.id === e.id ? { ...m, status: e.status } : m) } }
      })
    } else if (e.event === 'group.invite' && document.hidden) {
      notify('Group invitation', `You were invited to ${e.name}`)
    }
    scheduleRefresh()
  }), [client, scheduleRefresh])

  const items = useMemo(() => conversationItems(contacts, dms, groups, read), [contacts, dms, groups, read])
  const current = items.find((i) => i.key === selected)

  const open = useCallback((key: ConversationKey) => {
    setSelected(key)
    setPanel((p) => p === 'groupInfo' || p === 'safety' ? undefined : p)
    markRead(key)
    void loadThread(key, false)
  }, [loadThread, markRead])

  // Seeing the conversation again (tab shown) reads it.
  useEffect(() => {
    const onVisible = (): void => { if (!document.hidden && selectedRef.current !== undefined) markRead(selectedRef.current) }
    document.addEventListener('visibilitychange', onVisible)
    return () => { document.removeEventListener('visibilitychange', onVisible) }
  }, [markRead])

  // Esc closes the open panel, else the error, else the conversation (as WhatsApp Desktop does).
  useEffect(() => {
    const onKey = (e: KeyboardEvent): void => {
      if (e.key !== 'Escape') return
      if (panel !== undefined) setPanel(undefined)
      else if (error !== undefined) setError(undefined)
      else setSelected(undefined)
    }
    window.addEventListener('keydown', onKey)
    return () => { window.removeEventListener('keydown', onKey) }
  }, [panel, error])

  const onSent = useCallback((key: ConversationKey, m: MessageView | GroupMessageView) => {
    setThreads((t) => ({ ...t, [key]: { hasMore: false, loading: false, ...t[key], messages: mergeMessages<MessageView | GroupMessageView>(t[key]?.messages ?? [], [m]) } }))
    scheduleRefresh()
  }, [scheduleRefresh])

  const onContact = useCallback((c: ContactView) => {
    setContacts((cs) => [...cs.filter((x) => x.peerId !== c.peerId), c])
    scheduleRefresh()
  }, [scheduleRefresh])

  if (me === undefined) {
    return (
      <div className="app loading">
        <ConnectionBanner state={conn} onRetry={() => { client.retryNow() }} />
        {conn.kind !== 'closed' && <p role="status">Connecting to your node…</p>}
      </div>
    )
  }

  if (onboarding) {
    return <Onboarding actions={actions} me={me} onNamed={setMe} onDone={() => { setOnboarding(false) }} />
  }

  return (
    <div className="app">
      <ConnectionBanner state={conn} onRetry={() => { client.retryNow() }} />
      <div className="layout">
        <aside className="sidebar" aria-label="Conversations">
          <header className="sidebar-header">
            <button type="button" className="me" aria-label={`Settings for ${me.name}`} onClick={() => { setPanel('settings') }}>
              <PersonAvatar client={client} peerId={me.peerId} hash={me.avatar} name={me.name} />
              <span className="me-name">{me.name}</span>
            </button>
            <div className="toolbar">
              <button type="button" className="icon" aria-label="Contacts and invites" title="Contacts and invites" onClick={() => { setPanel('contacts') }}><Icon name="contact" /></button>
              <button type="button" className="icon" aria-label="New group" title="New group" onClick={() => { setPanel('newGroup') }}><Icon name="group" /></button>
              <button type="button" className="icon" aria-label="Settings" title="Settings" onClick={() => { setPanel('settings') }}><Icon name="settings" /></button>
            </div>
          </header>
          <NotificationPrompt />
          <ConversationList items={items} selected={selected} onOpen={open} actions={actions} onChanged={scheduleRefresh} />
        </aside>
        <main className="main">
          {current === undefined
            ? <EmptyMain onContacts={() => { setPanel('contacts') }} />
            : <ChatView
                key={current.key}
                item={current}
                me={me}
                contacts={contacts}
                thread={threads[current.key]}
                actions={actions}
                onLoadOlder={() => { void loadThread(current.key, true) }}
                onSent={(m) => { onSent(current.key, m) }}
                onContact={onContact}
                onInfo={() => { setPanel(current.kind === 'group' ? 'groupInfo' : 'safety') }}
                onSafety={() => { setPanel('safety') }}
              />}
        </main>
        {panel === 'contacts' && <ContactsPanel actions={actions} me={me} contacts={contacts} onClose={() => { setPanel(undefined) }} onContact={onContact} onOpen={(peerId) => { setPanel(undefined); open(dmKey(peerId)) }} />}
        {panel === 'settings' && <Settings actions={actions} me={me} onMe={setMe} onClose={() => { setPanel(undefined) }} />}
        {panel === 'newGroup' && <NewGroupDialog actions={actions} contacts={contacts} onClose={() => { setPanel(undefined) }} onCreated={(g) => { setPanel(undefined); scheduleRefresh(); open(groupKey(g)) }} />}
        {panel === 'groupInfo' && current?.group !== undefined && <GroupInfo actions={actions} me={me} group={current.group} contacts={contacts} onClose={() => { setPanel(undefined) }} onChanged={scheduleRefresh} />}
        {panel === 'safety' && current?.contact !== undefined && <SafetyNumberPanel actions={actions} contact={current.contact} onClose={() => { setPanel(undefined) }} onContact={onContact} />}
      </div>
      {error !== undefined && (
        <div className="toast" role="alert">
          <span>{error}</span>
          <button type="button" aria-label="Dismiss error" onClick={() => { setError(undefined) }}>✕</button>
        </div>
      )}
    </div>
  )
}

function EmptyMain ({ onContacts }: { onContacts: () => void }): React.JSX.Element {
  return (
    <div className="empty-main">
      <h1>Parley</h1>
      <p>Messages are end-to-end encrypted and go straight to your contacts, or wait at a relay while they are away.</p>
      <button type="button" onClick={onContacts}>Add a contact</button>
    </div>
  )
}

function splitKey (key: ConversationKey): ['dm' | 'group', string] {
  const i = key.indexOf(':')
  return [key.slice(0, i) as 'dm' | 'group', key.slice(i + 1)]
}

/**
 * A system notification, if the user allowed them (asked by NotificationPrompt). Not in the
 * Electron app (`window.parley`): its main process shows native notifications itself.
 */
function notify (title: string, body: string): void {
  if (window.parley !== undefined || !('Notification' in window) || Notification.permission !== 'granted') return
  const n = new Notification(title, { body, tag: 'parley' })
  n.onclick = () => { window.focus(); n.close() }
}
