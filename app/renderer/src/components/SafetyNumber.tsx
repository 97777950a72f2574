import { useEffect, useState } from 'react'
import type { ContactView, SafetyNumberView } from '../../../../core/api/contract.js'
import type { AppActions } from '../actions.js'
import { Panel } from './Panel.js'
import { Qr } from './Qr.js'

interface Props {
  actions: AppActions
  contact: ContactView
  onClose: () => void
  onContact: (c: ContactView) => void
}

/** The 60-digit safety number in twelve groups, its scannable QR, and Verify. */
export function SafetyNumberPanel ({ actions, contact, onClose, onContact }: Props): React.JSX.Element {
  const [sn, setSn] = useState<SafetyNumberView>()
  const peerId = contact.peerId
  const identity = contact.identity
  useEffect(() => {
    void actions.run('Loading the safety number', async () => { setSn(await actions.client.call('contact.safetyNumber', { peerId })) })
  }, [actions, peerId, identity])

  const verify = async (): Promise<void> => {
    if (sn === undefined) return
    const c = await actions.run('Verifying', async () => await actions.client.call('contact.verify', { peerId, safetyNumber: sn.safetyNumber }))
    if (c !== undefined) onContact(c)
  }
  const groups = sn?.safetyNumber.split(/\s+/).filter((g) => g !== '') ?? []

  return (
    <Panel title="Safety number" onClose={onClose}>
      <p>If the number below is the same on {contact.name}'s device, nobody is in the middle of your conversation. Compare it in person or over a call, or scan their code.</p>
      {sn?.changed === true && <div className="banner warning" role="alert">This is a new safety number: {contact.name}'s key changed. Accept or verify it to send messages again.</div>}
      {sn === undefined
        ? <p role="status">Loading…</p>
        : (
          <>
            <div className="safety-number" role="group" aria-label="Safety number digits" data-digits={groups.join('')}>
              {groups.map((g, i) => <span key={i} className="digits">{g}</span>)}
            </div>
            <Qr text={sn.scannable} label={`QR code of the safety number with ${contact.name}`} />
            <p className="verified-state" role="status">{identity === 'verified' ? `✔ You have verified ${contact.name}.` : `${contact.name} is not verified yet.`}</p>
            {identity !== 'verified' && <button type="button" onClick={() => { void verify() }}>Mark as verified</button>}
          </>
          )}
    </Panel>
  )
}
