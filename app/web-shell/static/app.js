/* global document, location, history, sessionStorage, URLSearchParams, WebSocket -- runs in a browser */
// Placeholder client of the web shell: connects to MessengerApi over the WebSocket, shows
// whoami and the contacts, and lists events as they arrive. The real renderer comes later.
// The access token arrives in the URL fragment (#token=...), which the browser never sends to
// the server; it is kept in sessionStorage so a reload works, and removed from the address bar.
const TOKEN_KEY = 'parley.token'
const fromHash = new URLSearchParams(location.hash.slice(1)).get('token')
if (fromHash !== null) {
  sessionStorage.setItem(TOKEN_KEY, fromHash)
  history.replaceState(null, '', location.pathname + location.search)
}
const token = sessionStorage.getItem(TOKEN_KEY)
const $ = (id) => document.getElementById(id)

function setStatus (text, isError = false) {
  $('status').textContent = text
  $('status').classList.toggle('error', isError)
}

if (token === null) {
  setStatus('No access token: open the URL that "parley web" printed (it ends with #token=...).', true)
} else {
  connect(token)
}

function connect (token) {
  const ws = new WebSocket(`ws://${location.host}/api?token=${encodeURIComponent(token)}`)
  const pending = new Map()
  let nextId = 1
  const call = (cmd, params = {}) => new Promise((resolve, reject) => {
    const id = nextId++
    pending.set(id, { resolve, reject })
    ws.send(JSON.stringify({ id, cmd, ...params }))
  })

  ws.addEventListener('message', (e) => {
    const frame = JSON.parse(e.data)
    if (frame.event !== undefined) {
      const li = document.createElement('li')
      li.textContent = JSON.stringify(frame)
      $('events').prepend(li)
      if (frame.event === 'contact' || frame.event === 'peer') void refreshContacts(call)
      return
    }
    const p = pending.get(frame.id)
    if (p === undefined) return
    pending.delete(frame.id)
    if (frame.ok) p.resolve(frame.result)
    else p.reject(new Error(`${frame.error.name}: ${frame.error.message}`))
  })
  ws.addEventListener('open', async () => {
    setStatus('Connected to your node.')
    try {
      const me = await call('whoami')
      $('me-name').textContent = me.name === '' ? '(no name set)' : me.name
      $('me-peer').textContent = me.peerId
      $('me-invite').textContent = me.invite
      await refreshContacts(call)
    } catch (err) {
      setStatus(String(err), true)
    }
  })
  ws.addEventListener('close', () => {
    setStatus('Disconnected: the node stopped, or the token is not this launch\'s. Open the URL "parley web" printed.', true)
  })
}

async function refreshContacts (call) {
  const { contacts } = await call('contacts.list')
  const list = $('contacts')
  list.replaceChildren()
  if (contacts.length === 0) {
    const li = document.createElement('li')
    li.textContent = 'No contacts yet.'
    list.append(li)
  }
  for (const c of contacts) {
    const li = document.createElement('li')
    li.textContent = `${c.name === '' ? c.peerId : c.name}${c.connected ? ' (online)' : ''}`
    list.append(li)
  }
}
