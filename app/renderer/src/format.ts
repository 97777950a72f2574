/** Dates and times as a chat app shows them, in the user's locale. */

export function sameDay (a: number, b: number): boolean {
  const x = new Date(a)
  const y = new Date(b)
  return x.getFullYear() === y.getFullYear() && x.getMonth() === y.getMonth() && x.getDate() === y.getDate()
}

/** "Today", "Yesterday", or the date. */
export function dayLabel (t: number, now = Date.now()): string {
  if (sameDay(t, now)) return 'Today'
  if (sameDay(t, now - 86_400_000)) return 'Yesterday'
  return new Date(t).toLocaleDateString(undefined, { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' })
}

export function timeOfDay (t: number): string {
  return new Date(t).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' })
}

/** The conversation list's time: the hour today, else a short date. */
export function listTime (t: number, now = Date.now()): string {
  if (sameDay(t, now)) return timeOfDay(t)
  if (sameDay(t, now - 86_400_000)) return 'Yesterday'
  return new Date(t).toLocaleDateString(undefined, { day: 'numeric', month: 'short' })
}

export function shortId (peerId: string): string {
  return peerId.length > 12 ? `${peerId.slice(0, 6)}…${peerId.slice(-4)}` : peerId
}

/** Initials for an avatar placeholder. */
export function initials (name: string): string {
  const parts = name.trim().split(/\s+/).filter((p) => p !== '')
  const letters = parts.slice(0, 2).map((p) => [...p][0] ?? '').join('')
  return letters.toUpperCase() || '?'
}
