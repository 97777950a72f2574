import { useEffect, useState } from 'react'
import type { ConnectionState } from '../client.js'

/** Says clearly when the page has lost its node, and when it tries again. */
export function ConnectionBanner ({ state, onRetry }: { state: ConnectionState, onRetry: () => void }): React.JSX.Element | null {
  const [now, setNow] = useState(Date.now())
  useEffect(() => {
    if (state.kind !== 'closed') return
    const t = window.setInterval(() => { setNow(Date.now()) }, 500)
    return () => { window.clearInterval(t) }
  }, [state.kind])
  if (state.kind !== 'closed') return null
  const secs = Math.max(0, Math.ceil((state.retryAt - now) / 1000))
  return (
    <div className="connection-banner" role="alert">
      <strong>Disconnected from your node.</strong>{' '}
      <span>{state.reason}{Number.isFinite(state.retryAt) ? ` Trying again in ${secs} s.` : ''}</span>
      {Number.isFinite(state.retryAt) && <button type="button" onClick={onRetry}>Reconnect now</button>}
    </div>
  )
}
