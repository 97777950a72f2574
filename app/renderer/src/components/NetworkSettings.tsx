import { useCallback, useEffect, useId, useRef, useState } from 'react'
import type { SettingsPatch, SettingsView, WhoAmI } from '../../../../core/api/contract.js'
import type { AppActions } from '../actions.js'
import { ApiError } from '../client.js'

/** While Settings is open, relay connection states are read again this often. */
const REFRESH_MS = 3000

/**
 * The Relays and Privacy sections of Settings (settings.get / settings.set). Changes apply at
 * once in the node; our own addresses (which name the relays) are read again after each.
 */
export function NetworkSettings ({ actions, me, onMe }: { actions: AppActions, me: WhoAmI, onMe: (me: WhoAmI) => void }): React.JSX.Element {
  const [settings, setSettings] = useState<SettingsView>()
  const [draft, setDraft] = useState('')
  const [addError, setAddError] = useState<string>()
  const [busy, setBusy] = useState(false)
  const errorId = useId()
  const privacyHelpId = useId()
  const { client } = actions
  const shown = useRef(me)
  shown.current = me

  /** whoami again; the app re-renders only if our addresses (or name) changed. */
  const rereadMe = useCallback(async () => {
    const fresh = await client.call('whoami', {})
    if (JSON.stringify(fresh) !== JSON.stringify(shown.current)) onMe(fresh)
  }, [client, onMe])

  const refresh = useCallback(async () => {
    setSettings(await client.call('settings.get', {}))
    await rereadMe()
  }, [client, rereadMe])

  useEffect(() => {
    void actions.run('Reading settings', refresh)
    const timer = window.setInterval(() => { refresh().catch(() => {}) }, REFRESH_MS)
    return () => { window.clearInterval(timer) }
  }, [actions, refresh])

  /** settings.set; errors are the caller's to show (thrown). */
  const change = async (patch: SettingsPatch): Promise<void> => {
    setBusy(true)
    try {
      setSettings(await client.call('settings.set', patch))
      await rereadMe()
    } finally {
      setBusy(false)
    }
  }

  const add = async (): Promise<void> => {
    if (settings === undefined) return
    const addr = draft.trim()
    try {
      await change({ relays: [...settings.relays, addr] })
      setDraft('')
      setAddError(undefined)
    } catch (err) {
      // The node says what is wrong with the address: shown next to the field.
      if (err instanceof ApiError) setAddError(err.message)
      else throw err
    }
  }

  if (settings === undefined) return <p className="hint" role="status">Reading settings…</p>
  const connected = new Set(settings.relaysConnected)
  return (
    <>
      <section className="stack" aria-label="Relays">
        <h3>Relays</h3>
        <p className="hint">
          A relay keeps your mail while you are offline, holds the keys others need to write to you first,
          and forwards connections when you cannot be reached directly. It cannot read your messages.
        </p>
        {settings.relays.length === 0
          ? <p className="hint">No relays: you are reachable on your local network and directly only.</p>
          : (
            <ul className="relay-list" aria-label="Your relays">
              {settings.relays.map((r) => (
                <li key={r}>
                  <code className="wrap">{r}</code>
                  <span className="hint">{connected.has(r) ? 'connected' : 'not connected'}</span>
                  <button type="button" className="danger" aria-label={`Remove relay ${r}`} disabled={busy}
                    onClick={() => { void actions.run('Removing the relay', async () => { await change({ relays: settings.relays.filter((x) => x !== r) }) }) }}>
                    Remove
                  </button>
                </li>
              ))}
            </ul>
            )}
        <form className="stack" aria-label="Add a relay" onSubmit={(e) => { e.preventDefault(); void actions.run('Adding the relay', add) }}>
          <label>Relay address
            <input value={draft} placeholder="/dns4/relay.example.org/tcp/4001/p2p/12D3KooW…" spellCheck={false} autoComplete="off"
              aria-invalid={addError !== undefined} aria-describedby={addError !== undefined ? errorId : undefined}
              onChange={(e) => { setDraft(e.target.value); setAddError(undefined) }} />
          </label>
          {addError !== undefined && <p id={errorId} className="field-error" role="alert">{addError}</p>}
          <button type="submit" disabled={busy || draft.trim() === ''}>Add relay</button>
        </form>
      </section>
      <section className="stack" aria-label="Privacy">
        <h3>Privacy</h3>
        <label className="checkbox">
          <input type="checkbox" role="switch" checked={settings.lanDiscovery} disabled={busy} aria-describedby={privacyHelpId}
            onChange={(e) => { const on = e.target.checked; void actions.run('Changing local network discovery', async () => { await change({ lanDiscovery: on }) }) }} />
          Find and be found on this local network
        </label>
        <p id={privacyHelpId} className="hint">
          With this on, your device announces itself on the network you are on (mDNS), so contacts on the same
          Wi-Fi reach you directly; anyone on that network can see that a Parley device is there and its addresses.
          Off: nothing is announced, and contacts reach you through your relays or addresses they already know.
        </p>
        {settings.lanDiscoveryForcedOff && (
          <p className="hint" role="note">This node was started with <code>--no-mdns</code>: it stays off until it is started without it, whatever this switch says.</p>
        )}
      </section>
    </>
  )
}
