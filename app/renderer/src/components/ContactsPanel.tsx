import { useState } from 'react'
import type { ContactView, WhoAmI } from '../../../../core/api/contract.js'
import type { AppActions } from '../actions.js'
import { PersonAvatar } from './Avatar.js'
import { CopyField } from './CopyField.js'
import { Panel } from './Panel.js'
import { Qr } from './Qr.js'

interface Props {
  actions: AppActions
  me: WhoAmI
  contacts: ContactView[]
  onClose: () => void
  onContact: (c: ContactView) => void
  onOpen: (peerId: string) => void
}

/** Add a contact by pasting their invite; share yours as text or QR; the contact list. */
export function ContactsPanel ({ actions, me, contacts, onClose, onContact, onOpen }: Props): React.JSX.Element {
  const [invite, setInvite] = useState('')
  const [name, setName] = useState('')
  const [busy, setBusy] = useState(false)

  const add = async (): Promise<void> => {
    setBusy(true)
    const c = await actions.run('Adding the contact', async () =>
      await actions.client.call('contact.add', { invite: invite.trim(), ...(name.trim() !== '' ? { name: name.trim() } : {}) }))
    setBusy(false)
    if (c === undefined) return
    onContact(c)
    setInvite('')
    setName('')
    onOpen(c.peerId)
  }

  return (
    <Panel title="Contacts" onClose={onClose}>
      <form className="stack" aria-label="Add a contact" onSubmit={(e) => { e.preventDefault(); void add() }}>
        <h3>Add a contact</h3>
        <label>Their invite
          <textarea value={invite} rows={3} placeholder="parley://invite/…" onChange={(e) => { setInvite(e.target.value) }} />
        </label>
        <label>Name (optional)
          <input value={name} maxLength={64} onChange={(e) => { setName(e.target.value) }} />
        </label>
        <button type="submit" disabled={busy || invite.trim() === ''}>Add contact</button>
      </form>

      <section className="stack" aria-label="Your invite">
        <h3>Your invite</h3>
        <p className="hint">Send this to someone (or let them scan the code) so they can add you.</p>
        <CopyField label="Your invite" value={me.invite} />
        <Qr text={me.invite} label="QR code of your invite" />
      </section>

      <section className="stack" aria-label="Your contacts">
        <h3>Your contacts</h3>
        {contacts.length === 0 && <p className="hint">No contacts yet.</p>}
        <ul className="contact-list">
          {[...contacts].sort((a, b) => a.name.localeCompare(b.name)).map((c) => (
            <li key={c.peerId}>
              <button type="button" className="contact" aria-label={`Chat with ${c.name}`} onClick={() => { onOpen(c.peerId) }}>
                <PersonAvatar client={actions.client} peerId={c.peerId} hash={c.avatar} name={c.name} online={c.connected} />
                <span>{c.name}{c.profileName !== undefined && c.profileName !== c.name ? <span className="hint"> ~{c.profileName}</span> : null}</span>
                <span className="hint">{c.connected ? 'connected' : 'not connected'}{c.identity === 'verified' ? ' · verified' : ''}</span>
              </button>
            </li>
          ))}
        </ul>
      </section>
    </Panel>
  )
}
