import { useEffect, useRef, type ReactNode } from 'react'

/**
 * A side panel or dialog: labelled, focus moved into it on open and back where it was on
 * close; Esc closes it (App listens for Esc).
 */
export function Panel ({ title, onClose, children, modal = false }: { title: string, onClose: () => void, children: ReactNode, modal?: boolean }): React.JSX.Element {
  const ref = useRef<HTMLElement>(null)
  useEffect(() => {
    const before = document.activeElement
    const first = ref.current?.querySelector<HTMLElement>('input, textarea, select, [data-autofocus], button:not(.panel-close)')
    first?.focus()
    return () => { if (before instanceof HTMLElement) before.focus() }
  }, [])
  return (
    <section ref={ref} className={modal ? 'panel modal' : 'panel'} role="dialog" aria-modal={modal} aria-label={title}>
      <header className="panel-header">
        <h2>{title}</h2>
        <button type="button" className="icon panel-close" aria-label={`Close ${title}`} onClick={onClose}>✕</button>
      </header>
      <div className="panel-body">{children}</div>
    </section>
  )
}
