import '../../core/polyfill.js'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { copyFile, mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { chromium, type Browser, type Locator, type Page } from 'playwright-core'
import { WebSocket } from 'ws'
import { Cluster, REPO_ROOT, type NodeProcess } from '../helpers/node-process.js'
import { png } from '../helpers/images.js'
import { startRelay, type TestRelay } from '../helpers/relay.js'

// Issue 6's acceptance, end to end: a real relay, three real `parley web` processes with their
// own data dirs, and Debian's chromium driving the built renderer as their users would. Elements
// are found by role and accessible name, as a screen reader user would find them.
//
// Screenshots go to test-output/e2e/ (gitignored); with PARLEY_DOCS_SCREENSHOTS=1 the main ones
// are also copied to docs/screenshots/ (committed documentation).

const CHROMIUM = process.env.PARLEY_CHROMIUM ?? '/usr/bin/chromium'
const SHOTS = join(REPO_ROOT, 'test-output', 'e2e')
const DOCS_SHOTS = join(REPO_ROOT, 'docs', 'screenshots')
const COPY_TO_DOCS = process.env.PARLEY_DOCS_SCREENSHOTS === '1'
const STEP_MS = 30_000

interface User {
  name: string
  node: NodeProcess
  page: Page
}

function urlOf (node: NodeProcess): string {
  const ready = node.lines.find((l) => l.event === 'ready')
  assert.ok(typeof ready?.url === 'string', `${node.label}: no url in the ready line`)
  return ready.url
}

async function shot (page: Page, name: string, docs = false): Promise<void> {
  const file = join(SHOTS, `${name}.png`)
  await page.screenshot({ path: file })
  if (docs && COPY_TO_DOCS) await copyFile(file, join(DOCS_SHOTS, `${name}.png`))
}

/** The message bubble with this text. */
function bubble (page: Page, text: string): Locator {
  return page.getByRole('log', { name: 'Messages' }).getByRole('article').filter({ hasText: text })
}

async function openConversation (page: Page, name: RegExp): Promise<void> {
  await page.getByRole('list', { name: 'Conversation list' }).getByRole('button', { name }).click()
}

async function send (page: Page, text: string): Promise<void> {
  const box = page.getByRole('textbox', { name: /^Message / })
  await box.fill(text)
  await box.press('Enter')
  await bubble(page, text).waitFor()
}

void describe('desktop app in a browser: three users, a relay, real nodes', { timeout: 480_000 }, () => {
  const cluster = new Cluster()
  let relay: TestRelay
  let browser: Browser
  let ada: User
  let bob: User
  let cyd: User

  async function startUser (name: string, label: string, previous?: NodeProcess): Promise<NodeProcess> {
    const options = { command: 'web' as const, label, extraArgs: ['--relay', relay.addr] }
    return previous === undefined ? await cluster.start(options) : await cluster.restart(previous, options)
  }

  async function openPage (node: NodeProcess): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1200, height: 760 } })
    const page = await context.newPage()
    page.setDefaultTimeout(STEP_MS)
    page.on('pageerror', (err) => { console.error(`${node.label} page error:`, err) })
    await page.goto(urlOf(node))
    return page
  }

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `chromium is not installed at ${CHROMIUM} (.ci/run installs Debian's chromium)`)
    await mkdir(SHOTS, { recursive: true })
    if (COPY_TO_DOCS) await mkdir(DOCS_SHOTS, { recursive: true })
    relay = await startRelay()
    const [a, b, c] = await Promise.all([startUser('Ada', 'A'), startUser('Bob', 'B'), startUser('Cyd', 'C')])
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
      // launch() gives the browser a fresh temporary profile of its own, removed on close
    })
    ada = { name: 'Ada', node: a, page: await openPage(a) }
    bob = { name: 'Bob', node: b, page: await openPage(b) }
    cyd = { name: 'Cyd', node: c, page: await openPage(c) }
  })

  after(async () => {
    await browser?.close()
    await cluster.cleanup()
    await relay?.stop()
  })

  // The steps build on each other: after a failure the rest fail at once instead of timing out.
  let failed: string | undefined
  function step (name: string, timeout: number, fn: () => Promise<void>): void {
    void it(name, { timeout }, async () => {
      assert.equal(failed, undefined, `an earlier step failed: ${String(failed)}`)
      try {
        await fn()
      } catch (err) {
        failed = name
        await Promise.all([ada, bob, cyd].map(async (u) => await u?.page.screenshot({ path: join(SHOTS, `failed-${u.name}.png`) }).catch(() => {})))
        throw err
      }
    })
  }

  step('onboarding: each user chooses a name and sees their invite', 60_000, async () => {
    for (const u of [ada, bob, cyd]) {
      const page = u.page
      await page.getByRole('main', { name: 'Welcome to Parley' }).waitFor()
      await page.getByRole('textbox', { name: 'Your name' }).fill(u.name)
      await page.getByRole('button', { name: 'Continue' }).click()
      const invite = page.getByRole('textbox', { name: 'Your invite' })
      await invite.waitFor()
      assert.match(await invite.inputValue(), new RegExp(`^parley://invite/12D3Koo\\w+\\?.*name=${u.name}`))
      await page.getByRole('img', { name: 'QR code of your invite' }).waitFor()
      if (u === ada) await shot(page, 'onboarding', true)
      await page.getByRole('button', { name: 'Start messaging' }).click()
      await page.getByRole('button', { name: 'Not now' }).click() // the polite notification prompt
      await page.getByRole('complementary', { name: 'Conversations' }).waitFor()
    }
  })

  async function inviteOf (u: User): Promise<string> {
    await u.page.getByRole('button', { name: 'Contacts and invites' }).click()
    const invite = await u.page.getByRole('dialog', { name: 'Contacts' }).getByRole('textbox', { name: 'Your invite' }).inputValue()
    await u.page.keyboard.press('Escape')
    await u.page.getByRole('dialog', { name: 'Contacts' }).waitFor({ state: 'detached' })
    return invite
  }

  async function addContact (u: User, invite: string): Promise<void> {
    await u.page.getByRole('button', { name: 'Contacts and invites' }).click()
    const panel = u.page.getByRole('dialog', { name: 'Contacts' })
    await panel.getByRole('textbox', { name: 'Their invite' }).fill(invite)
    await panel.getByRole('button', { name: 'Add contact' }).click()
    await panel.waitFor({ state: 'detached' }) // adding opens the conversation
  }

  step('two users add each other by invite, exchange messages, ticks reach delivered', 90_000, async () => {
    await addContact(ada, await inviteOf(bob))
    await addContact(bob, await inviteOf(ada))
    await bob.page.getByRole('heading', { name: 'Ada' }).waitFor()
    await bob.page.keyboard.press('Escape') // closes the conversation: Bob looks at his list
    await bob.page.getByRole('heading', { name: 'Ada' }).waitFor({ state: 'detached' })
    await ada.page.getByRole('heading', { name: 'Bob' }).waitFor()
    await send(ada.page, 'Hello Bob! Is this thing on?')
    await bubble(ada.page, 'Hello Bob!').getByRole('img', { name: 'Delivered' }).waitFor()

    // Bob sees it live in his list (unread) and in the conversation
    await bob.page.getByRole('button', { name: /^Ada, 1 unread/ }).waitFor()
    await openConversation(bob.page, /^Ada/)
    await bubble(bob.page, 'Hello Bob!').waitFor()
    await bob.page.getByRole('button', { name: /^Ada$/ }).waitFor() // read: the unread count is gone
    const box = bob.page.getByRole('textbox', { name: 'Message Ada' })
    await box.fill('Loud and clear.')
    await box.press('Shift+Enter') // a new line, not a send
    await box.pressSequentially('Two lines!')
    assert.equal(await box.inputValue(), 'Loud and clear.\nTwo lines!')
    await box.press('Enter')
    await bubble(bob.page, 'Two lines!').getByRole('img', { name: 'Delivered' }).waitFor()
    await bubble(ada.page, 'Two lines!').waitFor()
    assert.equal(await box.inputValue(), '', 'the composer is cleared after sending')
    await ada.page.getByRole('separator', { name: 'Today' }).waitFor()
    await shot(ada.page, 'chat', true)
  })

  step('Bob quits: Ada\'s messages wait (outbox, relay mailbox) and arrive when he is back', 90_000, async () => {
    await bob.node.terminate()
    await bob.page.getByRole('alert').filter({ hasText: 'Disconnected from your node' }).waitFor()
    await shot(bob.page, 'disconnected')
    await ada.page.getByRole('status').filter({ hasText: 'Bob is not connected' }).waitFor()
    await send(ada.page, 'Ping while you are away')
    const waiting = bubble(ada.page, 'Ping while you are away')
    assert.match(await waiting.getByRole('img').getAttribute('aria-label') ?? '', /^(Pending|Sent)$/, 'waiting, not delivered')
    await shot(ada.page, 'waiting')

    bob.node = await startUser('Bob', 'B', bob.node)
    await bob.page.goto(urlOf(bob.node)) // a new launch has a new token
    await openConversation(bob.page, /^Ada/)
    await bubble(bob.page, 'Ping while you are away').waitFor()
    await waiting.getByRole('img', { name: 'Delivered' }).waitFor()
    await bubble(bob.page, 'Hello Bob!').waitFor() // history kept in the same data dir
  })

  step('a group: created with Bob, Cyd added from the info panel, invites accepted in the UI, chat, info panel', 90_000, async () => {
    await addContact(ada, await inviteOf(cyd))
    await addContact(cyd, await inviteOf(ada))
    await ada.page.getByRole('button', { name: 'New group' }).click()
    const dialog = ada.page.getByRole('dialog', { name: 'New group' })
    await dialog.getByRole('textbox', { name: 'Group name' }).fill('Weekend trip')
    await dialog.getByRole('checkbox', { name: 'Bob' }).check()
    await dialog.getByRole('button', { name: 'Create group' }).click()
    await ada.page.getByRole('heading', { name: 'Weekend trip' }).waitFor()
    // Cyd comes in later: the admin adds her from the info panel.
    await ada.page.getByRole('button', { name: 'Group info' }).click()
    const adding = ada.page.getByRole('dialog', { name: 'Group info' })
    await adding.getByRole('combobox', { name: /^Add a contact/ }).selectOption({ label: 'Cyd' })
    await adding.getByRole('button', { name: 'Add member' }).click()
    await adding.getByRole('list', { name: 'Member list' }).getByRole('listitem', { name: 'Cyd, member' }).waitFor()
    await ada.page.keyboard.press('Escape')
    await adding.waitFor({ state: 'detached' })

    for (const u of [bob, cyd]) {
      await u.page.getByRole('button', { name: 'Accept invitation to Weekend trip' }).click()
      await u.page.getByRole('heading', { name: 'Weekend trip' }).waitFor()
    }
    await send(ada.page, 'Who brings the tent?')
    for (const u of [bob, cyd]) await bubble(u.page, 'Who brings the tent?').waitFor()
    await send(cyd.page, 'I will!')
    await bubble(ada.page, 'I will!').waitFor()
    await bubble(bob.page, 'I will!').waitFor()

    await ada.page.getByRole('button', { name: 'Group info' }).click()
    const info = ada.page.getByRole('dialog', { name: 'Group info' })
    const members = info.getByRole('list', { name: 'Member list' })
    await members.getByRole('listitem', { name: 'You, admin' }).waitFor()
    await members.getByRole('listitem', { name: 'Bob, member' }).waitFor()
    await members.getByRole('listitem', { name: 'Cyd, member' }).waitFor()
    await shot(ada.page, 'group-info', true)
    await ada.page.keyboard.press('Escape')
    await info.waitFor({ state: 'detached' })
  })

  step('the admin renames the group and removes a member; the removed member is told', 60_000, async () => {
    await openConversation(ada.page, /^Weekend trip/)
    await ada.page.getByRole('button', { name: 'Group info' }).click()
    const info = ada.page.getByRole('dialog', { name: 'Group info' })
    await info.getByRole('textbox', { name: 'Group name' }).fill('Weekend trip (Sat)')
    await info.getByRole('button', { name: 'Rename' }).click()
    await ada.page.getByRole('heading', { name: 'Weekend trip (Sat)' }).waitFor()
    await bob.page.getByRole('heading', { name: 'Weekend trip (Sat)' }).waitFor() // Bob has it open
    ada.page.once('dialog', (d) => { void d.accept() }) // "Remove Cyd from …?"
    await info.getByRole('button', { name: 'Remove Cyd from the group' }).click()
    await info.getByRole('list', { name: 'Member list' }).getByRole('listitem', { name: 'Cyd, member' }).waitFor({ state: 'detached' })
    await cyd.page.getByRole('status').filter({ hasText: 'You are no longer a member of this group' }).waitFor()
    assert.equal(await cyd.page.getByRole('textbox', { name: /^Message Weekend trip/ }).isDisabled(), true, 'Cyd cannot write there any more')
    await ada.page.keyboard.press('Escape')
    await info.waitFor({ state: 'detached' })
  })

  step('a long conversation: the newest 50 first, older ones load when scrolling up', 60_000, async () => {
    // Cyd's node sends 55 messages straight through its API socket (the same one its page uses).
    const url = new URL(urlOf(cyd.node))
    const token = new URLSearchParams(url.hash.slice(1)).get('token') ?? ''
    const api = new WebSocket(`ws://${url.host}/api?token=${token}`)
    await new Promise<void>((resolve, reject) => { api.once('open', resolve); api.once('error', reject) })
    const adaId = ada.node.ready.peerId
    const answered = new Promise<void>((resolve) => {
      let n = 0
      api.on('message', (data: Buffer) => { if ('ok' in (JSON.parse(data.toString('utf8')) as object) && ++n === 55) resolve() })
    })
    for (let i = 1; i <= 55; i++) api.send(JSON.stringify({ id: i, cmd: 'dm.send', to: adaId, text: `history ${i}` }))
    await answered
    api.close()

    await ada.page.getByRole('button', { name: /^Cyd, \d+ unread/ }).filter({ hasText: 'history 55' }).waitFor()
    // A reload forgets the loaded threads (the token comes back from sessionStorage, the
    // unread counts from localStorage); opening the conversation then reads one page.
    assert.equal(new URL(ada.page.url()).hash, '', 'the token is not left in the address bar')
    await ada.page.reload()
    await ada.page.getByRole('button', { name: 'Cyd, 55 unread' }).waitFor()
    await openConversation(ada.page, /^Cyd/)
    await bubble(ada.page, 'history 55').waitFor()
    const log = ada.page.getByRole('log', { name: 'Messages' })
    assert.equal(await log.getByRole('article').count(), 50, 'one page of 50')
    await log.hover()
    await ada.page.mouse.wheel(0, -50_000)
    await log.getByText('history 1', { exact: true }).waitFor()
    assert.equal(await log.getByRole('article').count(), 55)
  })

  step('Ada and Bob compare safety numbers (the same 60 digits) and Ada verifies', 60_000, async () => {
    const numbers: string[] = []
    for (const [u, other] of [[ada, 'Bob'], [bob, 'Ada']] as const) {
      await openConversation(u.page, new RegExp(`^${other}`))
      await u.page.getByRole('button', { name: 'Safety number' }).click()
      const digits = u.page.getByRole('dialog', { name: 'Safety number' }).getByRole('group', { name: 'Safety number digits' })
      await digits.waitFor()
      const text = (await digits.innerText()).replace(/\s+/g, '')
      assert.match(text, /^\d{60}$/)
      numbers.push(text)
    }
    assert.equal(numbers[0], numbers[1], 'both screens show the same number')
    const panel = ada.page.getByRole('dialog', { name: 'Safety number' })
    await panel.getByRole('img', { name: 'QR code of the safety number with Bob' }).waitFor()
    await panel.getByRole('button', { name: 'Mark as verified' }).click()
    await panel.getByText('You have verified Bob.').waitFor()
    await shot(ada.page, 'safety-number', true)
    await ada.page.keyboard.press('Escape')
  })

  step('a member leaves: Bob leaves the group, Ada sees him gone', 60_000, async () => {
    await openConversation(bob.page, /^Weekend trip/)
    await bob.page.getByRole('button', { name: 'Group info' }).click()
    const info = bob.page.getByRole('dialog', { name: 'Group info' })
    bob.page.once('dialog', (d) => { void d.accept() }) // "Leave Weekend trip (Sat)?"
    await info.getByRole('button', { name: 'Leave group' }).click()
    await bob.page.getByRole('status').filter({ hasText: 'You are no longer a member of this group' }).waitFor()
    await bob.page.keyboard.press('Escape')
    assert.equal(await bob.page.getByRole('textbox', { name: /^Message Weekend trip/ }).isDisabled(), true, 'Bob cannot write there any more')

    await openConversation(ada.page, /^Weekend trip/)
    await ada.page.getByRole('button', { name: 'Group info' }).click()
    const members = ada.page.getByRole('dialog', { name: 'Group info' }).getByRole('list', { name: 'Member list' })
    await members.getByRole('listitem', { name: 'Bob, member' }).waitFor({ state: 'detached' })
    await members.getByRole('listitem', { name: 'You, admin' }).waitFor()
    await ada.page.keyboard.press('Escape')
  })

  step('Bob re-installs (same peer id, new Signal identity): Ada is warned and her message waits until she accepts', 120_000, async () => {
    await bob.node.terminate()
    // A re-install: the libp2p key (identity.key, the peer id) stays, the database with the Signal keys is gone.
    await rm(join(bob.node.dataDir, 'db'), { recursive: true, force: true })
    bob.node = await startUser('Bob', 'B', bob.node)
    await bob.page.goto(urlOf(bob.node))
    await bob.page.getByRole('main', { name: 'Welcome to Parley' }).waitFor()
    await bob.page.getByRole('textbox', { name: 'Your name' }).fill('Bob')
    await bob.page.getByRole('button', { name: 'Continue' }).click()
    await bob.page.getByRole('button', { name: 'Start messaging' }).click()
    await bob.page.getByRole('complementary', { name: 'Conversations' }).waitFor()

    await openConversation(ada.page, /^Bob/)
    await send(ada.page, 'Is this still you, Bob?')
    const warning = ada.page.getByRole('alert').filter({ hasText: 'Bob\'s safety number has changed' })
    await warning.waitFor()
    const held = bubble(ada.page, 'Is this still you, Bob?')
    assert.match(await held.getByRole('img').getAttribute('aria-label') ?? '', /^(Pending|Sent)$/, 'held, not delivered')
    await shot(ada.page, 'identity-changed', true)
    assert.equal(await bob.page.getByText('Is this still you, Bob?').count(), 0, 'nothing reached the new key')

    await warning.getByRole('button', { name: 'Accept' }).click()
    await warning.waitFor({ state: 'detached' })
    await held.getByRole('img', { name: 'Delivered' }).waitFor()
    await bob.page.getByRole('complementary', { name: 'Conversations' }).getByText('Is this still you, Bob?').waitFor()
  })

  step('settings: a bad relay address is refused inline; the LAN discovery switch, by keyboard', 30_000, async () => {
    const page = ada.page
    await page.getByRole('button', { name: 'Settings', exact: true }).click()
    const settings = page.getByRole('dialog', { name: 'Settings' })
    const relays = settings.getByRole('list', { name: 'Your relays' })
    await relays.getByRole('listitem').filter({ hasText: relay.addr }).getByText('connected', { exact: true }).waitFor()
    const field = settings.getByRole('textbox', { name: 'Relay address' })
    await field.fill('/ip4/127.0.0.1/tcp/4001')
    await field.press('Enter')
    await settings.getByRole('alert').filter({ hasText: 'must end with /p2p/' }).waitFor()
    assert.equal(await field.getAttribute('aria-invalid'), 'true')
    assert.equal(await relays.getByRole('listitem').count(), 1, 'nothing added')
    const lan = settings.getByRole('switch', { name: 'Find and be found on this local network' })
    assert.equal(await lan.isChecked(), true)
    await lan.focus()
    await page.keyboard.press('Space')
    await settings.getByRole('switch', { name: 'Find and be found on this local network', checked: false }).waitFor()
    await shot(page, 'settings', true)
    await page.keyboard.press('Escape')
    await settings.waitFor({ state: 'detached' })
    await page.getByRole('button', { name: 'Settings', exact: true }).click()
    await settings.getByRole('switch', { name: 'Find and be found on this local network', checked: false }).waitFor() // kept by the node
    await page.keyboard.press('Escape')
    await settings.waitFor({ state: 'detached' })
  })

  step('dark theme from settings', 30_000, async () => {
    await ada.page.getByRole('button', { name: 'Settings', exact: true }).click()
    await ada.page.getByRole('radio', { name: 'Dark' }).check()
    assert.equal(await ada.page.locator('html').getAttribute('data-theme'), 'dark')
    await ada.page.keyboard.press('Escape')
    await openConversation(ada.page, /^Weekend trip/)
    await bubble(ada.page, 'I will!').waitFor()
    assert.match(await bubble(ada.page, 'I will!').innerText(), /^Cyd\n/, 'a removed member\'s messages keep her name')
    await shot(ada.page, 'dark', true)
  })

  step('Ada chooses a profile photo in Settings; Bob sees it for her', 60_000, async () => {
    await ada.page.getByRole('button', { name: 'Settings', exact: true }).click()
    const settings = ada.page.getByRole('dialog', { name: 'Settings' })
    await settings.getByLabel('Choose a photo').setInputFiles({ name: 'ada.png', mimeType: 'image/png', buffer: png(300, 200, [220, 60, 90]) })
    await settings.getByRole('img', { name: 'Preview of your new photo' }).waitFor()
    await settings.getByRole('button', { name: 'Save photo' }).click()
    await settings.getByRole('img', { name: 'Your profile photo' }).waitFor()
    await shot(ada.page, 'profile-photo-settings')
    await ada.page.keyboard.press('Escape')
    await openConversation(bob.page, /^Ada/)
    const photo = bob.page.getByRole('region', { name: 'Conversation with Ada' }).getByRole('img', { name: 'Profile photo of Ada' })
    await photo.waitFor()
    assert.match(await photo.getAttribute('src') ?? '', /^data:image\/(webp|jpeg);base64,/, 'the downscaled picture, not the PNG chosen')
    await shot(bob.page, 'profile-photo')
  })
})
