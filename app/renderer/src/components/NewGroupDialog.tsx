import { useState } from 'react'
import type { ContactView } from '../../../../core/api/contract.js'
import type { AppActions } from '../actions.js'
import { Panel } from './Panel.js'

/** Name a group and pick its first members from the contacts. */
export function NewGroupDialog ({ actions, contacts, onClose, onCreated }: { actions: AppActions, contacts: ContactView[], onClose: () => void, onCreated: (group: string) => void }): React.JSX.Element {
  const [name, setName] = useState('')
  const [members, setMembers] = useState<Set<string>>(new Set())
  const [busy, setBusy] = useState(false)
  const toggle = (peerId: string): void => {
    setMembers((m) => {
      const next = new Set(m)
      if (!next.delete(peerId)) next.add(peerId)
      return next
    })
  }
  const create = async (): Promise<void> => {
    setBusy(true)
    const r = await actions.run('Creating the group', async () => await actions.client.call('group.create', { name: name.trim(), members: [...members] }))
    setBusy(false)
    if (r !== undefined) onCreated(r.group)
  }
  return (
    <Panel title="New group" onClose={onClose} modal>
      <form className="stack" aria-label="New group" onSubmit={(e) => { e.preventDefault(); void create() }}>
        <label>Group name
          <input value={name} maxLength={100} onChange={(e) => { setName(e.target.value) }} />
        </label>
        <fieldset className="stack">
          <legend>Members</legend>
          {contacts.length === 0 && <p className="hint">Add contacts first.</p>}
          {[...contacts].sort((a, b) => a.name.localeCompare(b.name)).map((c) => (
            <label key={c.peerId} className="checkbox">
              <input type="checkbox" checked={members.has(c.peerId)} onChange={() => { toggle(c.peerId) }} />
              {c.name}
            </label>
          ))}
        </fieldset>
        <button type="submit" disabled={busy || name.trim() === ''}>Create group</button>
      </form>
    </Panel>
  )
}
