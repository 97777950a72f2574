import { createInterface } from 'node:readline'
import type { Readable, Writable } from 'node:stream'
import { describeError, InvalidRequestError } from '../errors.js'
import type { Messenger } from '../messenger.js'
import type { RequestId, Response } from './contract.js'
import { createDispatcher } from './dispatcher.js'

/** Longest request line accepted; a longer one gets an error and is discarded. */
export const MAX_LINE_BYTES = 1024 * 1024

/**
 * MessengerApi as JSON lines: one request per stdin line, one response per stdout line
 * (matched by `id`), events as lines of their own. Requests run concurrently; bad lines get
 * an error response and the loop goes on. Resolves when input ends or `signal` aborts.
 *
 * @example
 * await serveJsonLines(messenger, process.stdin, process.stdout, abortController.signal)
 */
export async function serveJsonLines (m: Messenger, input: Readable, output: Writable, signal?: AbortSignal): Promise<void> {
  const dispatch = createDispatcher(m)
  const write = (obj: unknown): void => { output.write(JSON.stringify(obj) + '\n') }
  const off = m.on((event) => { write(event) })
  const inflight = new Set<Promise<void>>()
  const lines = createInterface({ input, crlfDelay: Infinity })
  const onAbort = (): void => { lines.close() }
  signal?.addEventListener('abort', onAbort, { once: true })
  if (signal?.aborted === true) lines.close()
  try {
    for await (const line of lines) {
      if (line.trim() === '') continue
      const p = handleLine(line, dispatch).then(write)
      inflight.add(p)
      void p.finally(() => inflight.delete(p))
    }
    await Promise.all(inflight)
  } finally {
    signal?.removeEventListener('abort', onAbort)
    off()
  }
}

async function handleLine (line: string, dispatch: ReturnType<typeof createDispatcher>): Promise<Response> {
  let id: RequestId = null
  try {
    if (Buffer.byteLength(line) > MAX_LINE_BYTES) throw new InvalidRequestError(`request line over ${MAX_LINE_BYTES} bytes`)
    let req: unknown
    try {
      req = JSON.parse(line)
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
