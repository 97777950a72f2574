import { useState } from 'react'
import { dismissNotifyPrompt, notifyPromptDismissed } from '../prefs.js'

/** Asks once, politely, to show notifications for messages that arrive while the page is hidden. */
export function NotificationPrompt (): React.JSX.Element | null {
  // The Electron app notifies natively (its main process): nothing to ask there.
  const supported = 'Notification' in window && window.parley === undefined
  const [visible, setVisible] = useState(supported && Notification.permission === 'default' && !notifyPromptDismissed())
  if (!visible) return null
  return (
    <div className="notify-prompt" role="region" aria-label="Notifications">
      <p>Get notified about new messages while Parley is in the background?</p>
      <div className="row">
        <button type="button" onClick={() => { void Notification.requestPermission().finally(() => { setVisible(false) }) }}>Turn on notifications</button>
        <button type="button" className="secondary" onClick={() => { dismissNotifyPrompt(); setVisible(false) }}>Not now</button>
      </div>
    </div>
  )
}
