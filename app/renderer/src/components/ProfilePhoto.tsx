import { useState } from 'react'
import type { WhoAmI } from '../../../../core/api/contract.js'
import type { AppActions } from '../actions.js'
import { downscale, useAvatarUrl } from '../avatars.js'
import { Avatar } from './Avatar.js'

/**
 * Settings' profile photo: choose an image file, see it downscaled (128x128, as contacts will
 * get it), save or cancel; remove the current one. Contacts get it with our profile.
 */
export function ProfilePhoto ({ actions, me, onMe }: { actions: AppActions, me: WhoAmI, onMe: (me: WhoAmI) => void }): React.JSX.Element {
  const current = useAvatarUrl(actions.client, me.peerId, me.avatar)
  const [chosen, setChosen] = useState<{ base64: string, mime: string }>()
  const [busy, setBusy] = useState(false)
  const [inputKey, setInputKey] = useState(0) // a fresh input after each choice, so the same file can be chosen again

  const choose = async (file: File | undefined): Promise<void> => {
    setInputKey((k) => k + 1)
    if (file === undefined) return
    const scaled = await actions.run('Reading the picture', async () => await downscale(file))
    if (scaled !== undefined) setChosen(scaled)
  }
  const save = async (avatar: string | null): Promise<void> => {
    setBusy(true)
    const who = await actions.run(avatar === null ? 'Removing your photo' : 'Saving your photo', async () => await actions.client.call('profile.set', { avatar }))
    setBusy(false)
    if (who === undefined) return
    setChosen(undefined)
    onMe(who)
  }
  const shown = chosen !== undefined ? `data:${chosen.mime};base64,${chosen.base64}` : current

  return (
    <section className="stack" aria-label="Profile photo">
      <h3>Profile photo</h3>
      <div className="photo-picker">
        <Avatar name={me.name} src={shown} large alt={chosen !== undefined ? 'Preview of your new photo' : 'Your profile photo'} />
        <div className="stack">
          <label>Choose a photo
            <input key={inputKey} type="file" accept="image/png,image/jpeg,image/webp,image/*" disabled={busy} onChange={(e) => { void choose(e.target.files?.[0]) }} />
          </label>
          {chosen !== undefined
            ? (
              <span className="row">
                <button type="button" disabled={busy} onClick={() => { void save(chosen.base64) }}>Save photo</button>
                <button type="button" className="secondary" disabled={busy} onClick={() => { setChosen(undefined) }}>Cancel</button>
              </span>
              )
            : me.avatar !== undefined && <button type="button" className="danger" disabled={busy} onClick={() => { void save(null) }}>Remove photo</button>}
        </div>
      </div>
      <p className="hint">Your contacts see your name and photo; they are sent end-to-end encrypted, like your messages.</p>
    </section>
  )
}
