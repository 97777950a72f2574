import { InvalidRequestError, UnknownCommandError } from '../errors.js'
import type { Messenger } from '../messenger.js'
import { COMMAND_NAMES, DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT, type CommandName, type CommandResult } from './contract.js'

export type Params = Record<string, unknown>

/** Runs one command by name with its parameters; throws a named error when it fails. */
export type Dispatch = (cmd: unknown, params: Params) => Promise<unknown>

/**
 * Dispatches a command by name to the Messenger, validating its parameters. Shared by every
 * transport (stdio, WebSocket, Electron IPC): they only parse frames and call `dispatch`.
 *
 * @example
 * const dispatch = createDispatcher(messenger)
 * await dispatch('dm.send', { to: peerId, text: 'hi' }) // { id: '01J...', status: 'pending', ... }
 */
export function createDispatcher (m: Messenger): Dispatch {
  const handlers: { [C in CommandName]: (p: Params) => Promise<CommandResult<C>> | CommandResult<C> } = {
    'whoami': () => m.whoami(),
    'name.set': async (p) => await m.setName(str(p, 'name')),
    'profile.set': async (p) => await m.setProfile({ ...(p.name !== undefined ? { name: str(p, 'name') } : {}), ...avatar(p) }),
    'profile.avatar': async (p) => await m.avatarOf(str(p, 'peerId')),
    'contact.add': async (p) => await m.addContact(str(p, 'invite'), optStr(p, 'name')),
    'contacts.list': () => ({ contacts: m.listContacts() }),
    'contact.rename': async (p) => await m.renameContact(str(p, 'peerId'), str(p, 'name')),
    'contact.remove': async (p) => ({ removed: await m.removeContact(str(p, 'peerId')) }),
    'contact.safetyNumber': async (p) => await m.safetyNumber(str(p, 'peerId')),
    'contact.verify': async (p) => await m.verifyContact(str(p, 'peerId'), optStr(p, 'safetyNumber')),
    'contact.acceptIdentity': async (p) => await m.acceptIdentity(str(p, 'peerId')),
    'dm.send': async (p) => await m.sendText(str(p, 'to'), str(p, 'text')),
    'dm.history': async (p) => ({
      messages: await m.history(str(p, 'with'), limit(p), optStr(p, 'before'))
    }),
    'conversations.list': async () => ({ conversations: await m.conversations() }),
    'group.create': async (p) => ({ group: await m.groups.create(str(p, 'name'), strList(p, 'members')) }),
    'group.accept': async (p) => await m.groups.accept(str(p, 'group')),
    'group.decline': async (p) => await m.groups.decline(str(p, 'group')),
    'group.send': async (p) => await m.groups.send(str(p, 'group'), str(p, 'text')),
    'group.history': (p) => ({ messages: m.groups.history(str(p, 'group'), limit(p), optStr(p, 'before')) }),
    'group.members': (p) => ({ members: m.groups.members(str(p, 'group')) }),
    'group.add': async (p) => await m.groups.add(str(p, 'group'), str(p, 'peerId'), role(p)),
    'group.remove': async (p) => await m.groups.remove(str(p, 'group'), str(p, 'peerId')),
    'group.leave': async (p) => await m.groups.leave(str(p, 'group')),
    'group.rename': async (p) => await m.groups.rename(str(p, 'group'), str(p, 'name')),
    'groups.list': () => ({ groups: m.groups.list() }),
    'settings.get': () => m.settings(),
    // Every field is checked (unknown keys too) before anything changes: see parseSettingsPatch.
    'settings.set': async (p) => await m.updateSettings(p)
  }
  return async (cmd, params) => {
    if (typeof cmd !== 'string') throw new InvalidRequestError('"cmd" must be a string')
    if (!(COMMAND_NAMES as readonly string[]).includes(cmd)) throw new UnknownCommandError(`unknown command "${cmd.slice(0, 64)}"`)
    return await handlers[cmd as CommandName](params)
  }
}

function str (p: Params, key: string): string {
  const v = p[key]
  if (typeof v !== 'string') throw new InvalidRequestError(`"${key}" must be a string`)
  return v
}

function optStr (p: Params, key: string): string | undefined {
  const v = p[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'string') throw new InvalidRequestError(`"${key}" must be a string`)
  return v
}

function strList (p: Params, key: string): string[] {
  const v = p[key]
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new InvalidRequestError(`"${key}" must be an array of strings`)
  return v
}

/** `avatar`: absent (unchanged), null (remove) or a base64 string. */
function avatar (p: Params): { avatar?: string | null } {
  const v = p.avatar
  if (v === undefined) return {}
  if (v !== null && typeof v !== 'string') throw new InvalidRequestError('"avatar" must be a base64 string or null')
  return { avatar: v }
}

function role (p: Params): 'admin' | 'member' | undefined {
  const v = p.role
  if (v === undefined || v === null) return undefined
  if (v !== 'admin' && v !== 'member') throw new InvalidRequestError('"role" must be "admin" or "member"')
  return v
}

function limit (p: Params): number {
  const v = p.limit
  if (v === undefined || v === null) return DEFAULT_HISTORY_LIMIT
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_HISTORY_LIMIT) {
    throw new InvalidRequestError(`"limit" must be an integer from 1 to ${MAX_HISTORY_LIMIT}`)
  }
  return v
}
