import { useState } from 'react'
import type { WhoAmI } from '../../../../core/api/contract.js'
import type { AppActions } from '../actions.js'
import { loadTheme, saveTheme, type Theme } from '../prefs.js'
import { NameForm } from './NameForm.js'
import { NetworkSettings } from './NetworkSettings.js'
import { Panel } from './Panel.js'
import { ProfilePhoto } from './ProfilePhoto.js'

/** Display name and photo (what contacts see), theme, relays and privacy, and what the node says about itself. */
export function Settings ({ actions, me, onMe, onClose }: { actions: AppActions, me: WhoAmI, onMe: (me: WhoAmI) => void, onClose: () => void }): React.JSX.Element {
  const [theme, setTheme] = useState<Theme>(loadTheme())
  const pick = (t: Theme): void => { setTheme(t); saveTheme(t) }
  return (
    <Panel title="Settings" onClose={onClose}>
      <section className="stack" aria-label="Profile">
        <h3>Profile</h3>
        <NameForm actions={actions} me={me} onMe={onMe} submitLabel="Save name" />
      </section>
      <ProfilePhoto actions={actions} me={me} onMe={onMe} />
      <fieldset className="stack">
        <legend>Theme</legend>
        {(['system', 'light', 'dark'] as const).map((t) => (
          <label key={t} className="radio">
            <input type="radio" name="theme" value={t} checked={theme === t} onChange={() => { pick(t) }} />
            {t === 'system' ? 'Same as the system' : t === 'light' ? 'Light' : 'Dark'}
          </label>
        ))}
      </fieldset>
      <NetworkSettings actions={actions} me={me} onMe={onMe} />
      <section className="stack" aria-label="This device">
        <h3>This device</h3>
        <p className="hint">Peer id</p>
        <code className="wrap">{me.peerId}</code>
        <p className="hint">Listening on (shared in your invite)</p>
        <ul className="addr-list">{me.addrs.map((a) => <li key={a}><code className="wrap">{a}</code></li>)}</ul>
      </section>
    </Panel>
  )
}
