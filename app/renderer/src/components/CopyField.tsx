import { useState } from 'react'

/** Read-only text (an invite) with a Copy button. */
export function CopyField ({ label, value }: { label: string, value: string }): React.JSX.Element {
  const [copied, setCopied] = useState(false)
  const copy = async (): Promise<void> => {
    try {
      await navigator.clipboard.writeText(value)
      setCopied(true)
      window.setTimeout(() => { setCopied(false) }, 2000)
    } catch {
      setCopied(false) // no clipboard access: the text is selectable
    }
  }
  return (
    <div className="copy-field">
      <textarea aria-label={label} readOnly value={value} rows={4} onFocus={(e) => { e.target.select() }} />
      <button type="button" aria-label={`Copy ${label.toLowerCase()}`} onClick={() => { void copy() }}>{copied ? 'Copied' : 'Copy'}</button>
    </div>
  )
}
