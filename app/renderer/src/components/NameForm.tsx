import { useState } from 'react'
import type { WhoAmI } from '../../../../core/api/contract.js'
import type { AppActions } from '../actions.js'

/** Display name (name.set), 1–64 characters: in onboarding and in settings. */
export function NameForm ({ actions, me, onMe, submitLabel }: { actions: AppActions, me: WhoAmI, onMe: (me: WhoAmI) => void, submitLabel: string }): React.JSX.Element {
  const [name, setName] = useState(me.name)
  const [busy, setBusy] = useState(false)
  const save = async (): Promise<void> => {
    setBusy(true)
    const who = await actions.run('Saving your name', async () => await actions.client.call('name.set', { name: name.trim() }))
    setBusy(false)
    if (who !== undefined) onMe(who)
  }
  return (
    <form className="stack" aria-label="Your name" onSubmit={(e) => { e.preventDefault(); void save() }}>
      <label>Your name
        <input value={name} maxLength={64} autoComplete="nickname" onChange={(e) => { setName(e.target.value) }} />
      </label>
      <button type="submit" disabled={busy || name.trim() === '' || name.trim() === me.name}>{submitLabel}</button>
    </form>
  )
}
