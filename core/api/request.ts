import { describeError, InvalidRequestError } from '../errors.js'
import type { RequestId, Response } from './contract.js'
import type { Dispatch } from './dispatcher.js'

/** Largest request accepted (a JSON line, a WebSocket text frame); a larger one gets an error. */
export const MAX_REQUEST_BYTES = 1024 * 1024

/**
 * One request in its wire form (a JSON object `{"id","cmd",...params}` as text) to one
 * response. Shared by every text transport (JSON lines, WebSocket), so bad input is refused
 * the same way everywhere: over MAX_REQUEST_BYTES, not JSON or not an object →
 * InvalidRequestError with `id: null` (or the request's id when it could be read). Never throws.
 *
 * @example
 * const dispatch = createDispatcher(messenger)
 * await handleRequest('{"id":1,"cmd":"whoami"}', dispatch) // { id: 1, ok: true, result: {...} }
 */
export async function handleRequest (text: string, dispatch: Dispatch): Promise<Response> {
  let id: RequestId = null
  try {
    const tooLarge = oversizeRequest(text)
    if (tooLarge !== undefined) throw tooLarge
    let req: unknown
    try {
      req = JSON.parse(text)
    } catch {
      throw new InvalidRequestError('request is not valid JSON')
    }
    if (req === null || typeof req !== 'object' || Array.isArray(req)) throw new InvalidRequestError('request must be a JSON object')
    const { id: rawId, cmd, ...params } = req as Record<string, unknown>
    if (typeof rawId === 'string' || typeof rawId === 'number') id = rawId
    const result = await dispatch(cmd, params)
    return { id, ok: true, result }
  } catch (err) {
    return { id, ok: false, error: describeError(err) }
  }
}

/**
 * The error for a request over MAX_REQUEST_BYTES, or undefined. For transports that pass
 * frames on to another process (Electron IPC to the core process): refuse before copying.
 */
export function oversizeRequest (text: string): InvalidRequestError | undefined {
  // A UTF-16 string never takes more than 3 UTF-8 bytes per unit: skip the count when short.
  if (text.length * 3 > MAX_REQUEST_BYTES && Buffer.byteLength(text) > MAX_REQUEST_BYTES) {
    return new InvalidRequestError(`request over ${MAX_REQUEST_BYTES} bytes`)
  }
  return undefined
}
