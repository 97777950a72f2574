import { useRef, useState } from 'react'
import { Icon } from './Icon.js'

/** The message box: Enter sends, Shift+Enter starts a new line. Room for attachments beside it. */
export function Composer ({ disabled, onSend, label }: { disabled: boolean, onSend: (text: string) => Promise<boolean>, label: string }): React.JSX.Element {
  const [text, setText] = useState('')
  const [busy, setBusy] = useState(false)
  const box = useRef<HTMLTextAreaElement>(null)

  const submit = async (): Promise<void> => {
    const t = text.trim()
    if (t === '' || busy || disabled) return
    setBusy(true)
    const ok = await onSend(t)
    setBusy(false)
    if (ok) setText('')
    box.current?.focus()
  }

  return (
    <form className="composer" aria-label="Write a message" onSubmit={(e) => { e.preventDefault(); void submit() }}>
      <textarea
        ref={box}
        aria-label={label}
        placeholder={disabled ? 'You cannot write here' : 'Type a message'}
        rows={1}
        value={text}
        disabled={disabled}
        autoFocus
        onChange={(e) => { setText(e.target.value) }}
        onKeyDown={(e) => {
          if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
            e.preventDefault()
            void submit()
          }
        }}
      />
      <button type="submit" aria-label="Send" disabled={disabled || busy || text.trim() === ''}><Icon name="send" /></button>
    </form>
  )
}
