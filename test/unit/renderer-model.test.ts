import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { ContactView, GroupView, MessageView } from '../../core/api/contract.js'
import { dayLabel, initials, listTime, sameDay } from '../../app/renderer/src/format.js'
import { conversationItems, mergeMessages, unreadOf } from '../../app/renderer/src/model.js'

// The renderer's view model (plain functions, no DOM): merging pages and live events into a
// thread, unread counts, and the conversation list's rows and order.

const T0 = Date.UTC(2026, 10, 27, 12, 0, 0)

function msg (id: string, sentAt: number, extra: Partial<MessageView> = {}): MessageView {
  return { id, conversation: 'peer', from: 'peer', direction: 'in', text: id, sentAt, lamport: sentAt, status: 'received', ...extra }
}

function contact (peerId: string, name: string, addedAt: number): ContactView {
  return { peerId, name, addrs: [], origin: 'invite', addedAt, connected: false, identity: 'trusted' }
}

void describe('renderer model', () => {
  void it('merges messages by id (the later copy wins) in time order', () => {
    const page = [msg('B', T0 + 2), msg('C', T0 + 3, { direction: 'out', status: 'pending' })]
    const live = [msg('C', T0 + 3, { direction: 'out', status: 'delivered' }), msg('D', T0 + 4)]
    const older = [msg('A', T0 + 1)]
    const merged = mergeMessages(mergeMessages(page, live), older)
    assert.deepEqual(merged.map((m) => m.id), ['A', 'B', 'C', 'D'])
    assert.equal(merged.find((m) => m.id === 'C')?.status, 'delivered')
    // equal times fall back to lamport, then id
    assert.deepEqual(mergeMessages([msg('Y', T0, { lamport: 2 }), msg('X', T0, { lamport: 2 }), msg('Z', T0, { lamport: 1 })], []).map((m) => m.id), ['Z', 'X', 'Y'])
  })

  void it('counts unread from events, at least 1 when the newest incoming message is unseen', () => {
    assert.equal(unreadOf(undefined, undefined), 0)
    assert.equal(unreadOf({ unread: 3, readUpTo: T0 }, msg('A', T0 - 1)), 3)
    assert.equal(unreadOf(undefined, msg('A', T0)), 1)
    assert.equal(unreadOf({ unread: 0, readUpTo: T0 }, msg('A', T0 - 1)), 0, 'read since')
    assert.equal(unreadOf(undefined, msg('A', T0, { direction: 'out' })), 0, 'our own message')
  })

  void it('lists invitations first, then by last message, with contacts not written to yet', () => {
    const contacts = [contact('p1', 'Ada', T0), contact('p2', 'Bob', T0 + 10), contact('p3', 'Cyd', T0 - 10)]
    const dms = [{ peerId: 'p1', name: 'Ada', last: msg('M1', T0 + 5) }, { peerId: 'p9', name: 'Stranger', last: msg('M9', T0 + 1) }]
    const groups: GroupView[] = [
      { group: 'g1', name: 'Climbing', state: 'joined', role: 'admin', members: 3, last: { ...msg('G1', T0 + 20), group: 'g1' } },
      { group: 'g2', name: 'Invite', state: 'invited', role: 'member', members: 2 }
    ]
    const items = conversationItems(contacts, dms, groups, { 'dm:p1': { unread: 2, readUpTo: 0 } })
    assert.deepEqual(items.map((i) => i.key), ['group:g2', 'group:g1', 'dm:p2', 'dm:p1', 'dm:p9', 'dm:p3'])
    const ada = items.find((i) => i.key === 'dm:p1')
    assert.equal(ada?.unread, 2)
    assert.equal(ada?.contact?.name, 'Ada')
    assert.equal(items.find((i) => i.key === 'dm:p9')?.name, 'Stranger', 'a conversation whose contact was removed keeps its name')
  })

  void it('formats days and times as a chat list does', () => {
    const now = new Date(2026, 10, 27, 15, 0).getTime()
    assert.equal(dayLabel(new Date(2026, 10, 27, 0, 5).getTime(), now), 'Today')
    assert.equal(dayLabel(new Date(2026, 10, 26, 23, 55).getTime(), now), 'Yesterday')
    assert.match(dayLabel(new Date(2026, 10, 20).getTime(), now), /2026/)
    assert.equal(listTime(new Date(2026, 10, 26, 9).getTime(), now), 'Yesterday')
    assert.ok(sameDay(new Date(2026, 0, 1, 0, 0).getTime(), new Date(2026, 0, 1, 23, 59).getTime()))
    assert.equal(initials('ada  lovelace byron'), 'AL')
    assert.equal(initials('  '), '?')
  })
})
