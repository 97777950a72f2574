/**
 * What the renderer keeps in localStorage (per browser profile): the theme, whether the
 * notification prompt was dismissed, and unread counts. MessengerApi has no read state yet,
 * so unread counts live here, keyed by the node's peer id.
 */
import type { ReadState } from './model.js'

export type Theme = 'system' | 'light' | 'dark'

const THEME_KEY = 'parley.theme'
const NOTIFY_KEY = 'parley.notifyPrompt'

export function loadTheme (): Theme {
  const t = localStorage.getItem(THEME_KEY)
  return t === 'light' || t === 'dark' ? t : 'system'
}

export function saveTheme (t: Theme): void {
  localStorage.setItem(THEME_KEY, t)
  applyTheme(t)
}

/** `data-theme` on <html>: the CSS follows prefers-color-scheme unless it is light or dark. */
export function applyTheme (t: Theme): void {
  if (t === 'system') delete document.documentElement.dataset.theme
  else document.documentElement.dataset.theme = t
}

export function notifyPromptDismissed (): boolean {
  return localStorage.getItem(NOTIFY_KEY) === 'dismissed'
}

export function dismissNotifyPrompt (): void {
  localStorage.setItem(NOTIFY_KEY, 'dismissed')
}


export function loadReadState (me: string): Record<string, ReadState> {
  try {
    const raw = localStorage.getItem(`parley.read.${me}`)
    if (raw === null) return {}
    const parsed = JSON.parse(raw) as unknown
    return typeof parsed === 'object' && parsed !== null ? parsed as Record<string, ReadState> : {}
  } catch {
    return {} // a corrupt entry only loses unread counts
  }
}

export function saveReadState (me: string, state: Record<string, ReadState>): void {
  localStorage.setItem(`parley.read.${me}`, JSON.stringify(state))
}
