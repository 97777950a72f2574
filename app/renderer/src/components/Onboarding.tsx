import type { WhoAmI } from '../../../../core/api/contract.js'
import type { AppActions } from '../actions.js'
import { CopyField } from './CopyField.js'
import { NameForm } from './NameForm.js'
import { Qr } from './Qr.js'

/** First run: choose a name, then see the invite to share. */
export function Onboarding ({ actions, me, onNamed, onDone }: { actions: AppActions, me: WhoAmI, onNamed: (me: WhoAmI) => void, onDone: () => void }): React.JSX.Element {
  const named = me.name !== ''
  return (
    <main className="onboarding" aria-label="Welcome to Parley">
      <div className="card stack">
        <h1>Welcome to Parley</h1>
        {!named
          ? (
            <>
              <p>Private messages that go straight from your device to your contacts, end-to-end encrypted. No phone number, no account: choose the name your contacts will see.</p>
              <NameForm actions={actions} me={me} onMe={onNamed} submitLabel="Continue" />
            </>
            )
          : (
            <>
              <p>Hello {me.name}! This is your invite. Send it to the people you want to talk to, or let them scan the code; paste theirs under Contacts.</p>
              <CopyField label="Your invite" value={me.invite} />
              <Qr text={me.invite} label="QR code of your invite" />
              <button type="button" data-autofocus onClick={onDone}>Start messaging</button>
            </>
            )}
      </div>
    </main>
  )
}
