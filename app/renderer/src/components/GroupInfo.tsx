import { useEffect, useState } from 'react'
import type { ContactView, GroupMemberView, GroupView, WhoAmI } from '../../../../core/api/contract.js'
import type { AppActions } from '../actions.js'
import { shortId } from '../format.js'
import { Avatar } from './Avatar.js'
import { Panel } from './Panel.js'

interface Props {
  actions: AppActions
  me: WhoAmI
  group: GroupView
  contacts: ContactView[]
  onClose: () => void
  onChanged: () => void
}

/** Members and their roles; admins rename, add and remove; anyone leaves. */
export function GroupInfo ({ actions, me, group, contacts, onClose, onChanged }: Props): React.JSX.Element {
  const [members, setMembers] = useState<GroupMemberView[]>([])
  const [name, setName] = useState(group.name)
  const [adding, setAdding] = useState('')
  const id = group.group

  const reload = async (): Promise<void> => {
    await actions.run('Loading members', async () => { setMembers((await actions.client.call('group.members', { group: id })).members) })
  }
  // group.members changes with group.updated events (the list refresh gives a new GroupView)
  useEffect(() => { void reload() }, [group])

  const admin = group.role === 'admin' && group.state === 'joined'
  const change = async (what: string, op: () => Promise<unknown>): Promise<void> => {
    if (await actions.run(what, op) !== undefined) {
      onChanged()
      await reload()
    }
  }
  const candidates = contacts.filter((c) => !members.some((m) => m.peerId === c.peerId))
  const label = (m: GroupMemberView): string => m.peerId === me.peerId ? 'You' : (m.name !== '' ? m.name : shortId(m.peerId))

  return (
    <Panel title="Group info" onClose={onClose}>
      {admin
        ? (
          <form className="stack" aria-label="Rename group" onSubmit={(e) => { e.preventDefault(); void change('Renaming', async () => await actions.client.call('group.rename', { group: id, name: name.trim() })) }}>
            <label>Group name
              <input value={name} maxLength={100} onChange={(e) => { setName(e.target.value) }} />
            </label>
            <button type="submit" disabled={name.trim() === '' || name.trim() === group.name}>Rename</button>
          </form>
          )
        : <h3>{group.name}</h3>}

      <section className="stack" aria-label="Members">
        <h3>{members.length} member{members.length === 1 ? '' : 's'}</h3>
        <ul className="member-list" aria-label="Member list">
          {members.map((m) => (
            <li key={m.peerId} aria-label={`${label(m)}, ${m.role}`}>
              <Avatar name={label(m)} />
              <span className="member-name">{label(m)}</span>
              <span className={`role ${m.role}`}>{m.role === 'admin' ? 'Admin' : 'Member'}</span>
              {admin && m.peerId !== me.peerId && (
                <button type="button" className="secondary" aria-label={`Remove ${label(m)} from the group`} onClick={() => {
                  if (window.confirm(`Remove ${label(m)} from ${group.name}?`)) void change('Removing', async () => await actions.client.call('group.remove', { group: id, peerId: m.peerId }))
                }}>Remove</button>
              )}
            </li>
          ))}
        </ul>
      </section>

      {admin && (
        <form className="stack" aria-label="Add member" onSubmit={(e) => {
          e.preventDefault()
          if (adding !== '') void change('Adding', async () => { const g = await actions.client.call('group.add', { group: id, peerId: adding }); setAdding(''); return g })
        }}>
          <label>Add a contact
            <select value={adding} onChange={(e) => { setAdding(e.target.value) }}>
              <option value="">Choose a contact…</option>
              {candidates.map((c) => <option key={c.peerId} value={c.peerId}>{c.name}</option>)}
            </select>
          </label>
          <button type="submit" disabled={adding === ''}>Add member</button>
        </form>
      )}

      {group.state === 'joined' && (
        <button type="button" className="danger" onClick={() => {
          if (window.confirm(`Leave ${group.name}? You will not see its new messages.`)) void change('Leaving', async () => await actions.client.call('group.leave', { group: id }))
        }}>Leave group</button>
      )}
    </Panel>
  )
}
