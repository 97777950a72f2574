/**
 * MessengerApi: the one contract of commands, results and events that the Electron IPC
 * bridge, the web shell's WebSocket and the headless node's JSON lines all carry. Adding a
 * command means adding it here, in the dispatcher, and in docs/cli.md.
 *
 * Wire form (JSON lines / WebSocket / IPC):
 *   request   {"id":1,"cmd":"dm.send","to":"12D3...","text":"hi"}
 *   response  {"id":1,"ok":true,"result":{...}}  or  {"id":1,"ok":false,"error":{"name":"...","message":"..."}}
 *   event     {"event":"message",...}
 */
import type { MessageStatus } from '../store/status.js'

export type { MessageStatus }

export interface WhoAmI {
  peerId: string
  name: string
  addrs: string[]
  invite: string
  /** Our avatar's content hash, if we have one (the picture: `profile.avatar`). */
  avatar?: string
}

export interface ContactView {
  peerId: string
  /** The name to show: ours for the contact if we chose one, else their profile name, else the invite's. */
  name: string
  /** What the contact calls themselves (their profile), if they told us. */
  profileName?: string
  /** Their avatar's content hash, if they sent one: fetch it with `profile.avatar` when it changes. */
  avatar?: string
  addrs: string[]
  origin: 'invite' | 'inbound'
  addedAt: number
  /** A live connection to this contact right now. */
  connected: boolean
  /**
   * Trust in the contact's Signal identity key: unknown (no key seen yet), trusted (first
   * key seen, not verified), verified (safety number compared), changed (a new key the
   * user has not accepted: nothing is sent to it).
   */
  identity: 'unknown' | 'trusted' | 'verified' | 'changed'
}

export interface SafetyNumberView {
  peerId: string
  /** 60 digits in 12 groups of 5; both sides see the same number. */
  safetyNumber: string
  /** Base64 of the scannable fingerprint (what a QR code carries). */
  scannable: string
  /** The number is for a changed key that is not accepted yet. */
  changed: boolean
  verified: boolean
}

export interface MessageView {
  id: string
  conversation: string
  from: string
  direction: 'in' | 'out'
  text: string
  sentAt: number
  lamport: number
  status: MessageStatus
}

/** A group message as history shows it: the fields of MessageView plus the group. */
export interface GroupMessageView extends MessageView {
  group: string
}

export interface GroupMemberView {
  peerId: string
  role: 'admin' | 'member'
  /** Our contact name for the member ('' if not a contact). */
  name: string
  addedBy: string
  addedAt: number
}

export interface GroupView {
  group: string
  name: string
  /** invited: not accepted yet; joined; left (we left, declined or were removed). */
  state: 'invited' | 'joined' | 'left'
  /** Our role in the group's member list. */
  role: 'admin' | 'member' | 'removed' | 'left'
  members: number
  last?: GroupMessageView
}

export type AvatarMime = 'image/png' | 'image/jpeg' | 'image/webp'

/** Someone's avatar (ours or a contact's): the picture as base64, or null if there is none. */
export interface ProfileAvatarView {
  peerId: string
  avatar: { hash: string, mime: AvatarMime, data: string } | null
}

export interface ConversationView {
  peerId: string
  name: string
  last?: MessageView
}

/**
 * The node's relay and privacy settings (`settings.get`, `settings.set`), kept in its store
 * and applied while it runs.
 */
export interface SettingsView {
  /** Relays to stay connected to (multiaddrs ending in /p2p/<relay peer id>), in order. */
  relays: string[]
  /** Those of `relays` the node has a connection to right now. */
  relaysConnected: string[]
  /** Announce this node and find others on the local network (mDNS). */
  lanDiscovery: boolean
  /** The node was started with `--no-mdns`: mDNS stays off whatever `lanDiscovery` says. */
  lanDiscoveryForcedOff: boolean
}

/** What `settings.set` takes: any of these; omitted ones are left as they are. */
export interface SettingsPatch {
  relays?: string[]
  lanDiscovery?: boolean
}

/** Each command: what it takes (besides `id` and `cmd`) and what it answers. */
export interface Commands {
  'whoami': { params: Record<string, never>, result: WhoAmI }
  'name.set': { params: { name: string }, result: WhoAmI }
  /** Name and/or avatar (base64 PNG/JPEG/WebP, at most 48 KiB; null removes it); absent fields stay as they are. */
  'profile.set': { params: { name?: string, avatar?: string | null }, result: WhoAmI }
  'profile.avatar': { params: { peerId: string }, result: ProfileAvatarView }
  'contact.add': { params: { invite: string, name?: string }, result: ContactView }
  'contacts.list': { params: Record<string, never>, result: { contacts: ContactView[] } }
  'contact.rename': { params: { peerId: string, name: string }, result: ContactView }
  'contact.remove': { params: { peerId: string }, result: { removed: boolean } }
  'contact.safetyNumber': { params: { peerId: string }, result: SafetyNumberView }
  'contact.verify': { params: { peerId: string, safetyNumber?: string }, result: ContactView }
  'contact.acceptIdentity': { params: { peerId: string }, result: ContactView }
  'dm.send': { params: { to: string, text: string }, result: MessageView }
  'dm.history': { params: { with: string, limit?: number, before?: string }, result: { messages: MessageView[] } }
  'conversations.list': { params: Record<string, never>, result: { conversations: ConversationView[] } }
  'group.create': { params: { name: string, members: string[] }, result: { group: string } }
  'group.accept': { params: { group: string }, result: GroupView }
  'group.decline': { params: { group: string }, result: GroupView }
  'group.send': { params: { group: string, text: string }, result: GroupMessageView }
  'group.history': { params: { group: string, limit?: number, before?: string }, result: { messages: GroupMessageView[] } }
  'group.members': { params: { group: string }, result: { members: GroupMemberView[] } }
  'group.add': { params: { group: string, peerId: string, role?: 'admin' | 'member' }, result: GroupView }
  'group.remove': { params: { group: string, peerId: string }, result: GroupView }
  'group.leave': { params: { group: string }, result: GroupView }
  'group.rename': { params: { group: string, name: string }, result: GroupView }
  'groups.list': { params: Record<string, never>, result: { groups: GroupView[] } }
  'settings.get': { params: Record<string, never>, result: SettingsView }
  'settings.set': { params: SettingsPatch, result: SettingsView }
}

export type CommandName = keyof Commands
export type CommandParams<C extends CommandName> = Commands[C]['params']
export type CommandResult<C extends CommandName> = Commands[C]['result']

export const COMMAND_NAMES: readonly CommandName[] = [
  'whoami', 'name.set', 'profile.set', 'profile.avatar', 'contact.add', 'contacts.list', 'contact.rename', 'contact.remove',
  'contact.safetyNumber', 'contact.verify', 'contact.acceptIdentity', 'dm.send', 'dm.history', 'conversations.list',
  'group.create', 'group.accept', 'group.decline', 'group.send', 'group.history', 'group.members', 'group.add',
  'group.remove', 'group.leave', 'group.rename', 'groups.list', 'settings.get', 'settings.set'
]

/** Group events (also part of MessengerEvent). */
export type GroupMessageEvent =
  /** Someone added us to a group: accept or decline it. */
  | { event: 'group.invite', group: string, name: string, from: string }
  | { event: 'group.message', group: string, from: string, id: string, text: string, sentAt: number, lamport: number }
  /** Members, roles, name or our own state in the group changed. */
  | { event: 'group.updated', group: string }

/** Events pushed to every client. */
export type MessengerEvent =
  | { event: 'message', conversation: string, from: string, id: string, text: string, sentAt: number, lamport: number }
  | { event: 'status', id: string, conversation: string, status: MessageStatus }
  /** Someone who was not a contact wrote first and was added, or a contact's profile changed. */
  | { event: 'contact', contact: ContactView }
  | { event: 'peer', peerId: string, connected: boolean }
  /** The contact's identity key changed (a warning for the conversation), or was accepted/verified. */
  | { event: 'identity', peerId: string, identity: ContactView['identity'] }
  | GroupMessageEvent

export interface ErrorShape { name: string, message: string }

export type Response =
  | { id: RequestId, ok: true, result: unknown }
  | { id: RequestId, ok: false, error: ErrorShape }

export type RequestId = string | number | null

/** Default and maximum page size for history. */
export const DEFAULT_HISTORY_LIMIT = 50
export const MAX_HISTORY_LIMIT = 1000
