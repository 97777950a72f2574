import { createInterface } from 'node:readline'
import type { Readable, Writable } from 'node:stream'
import type { Messenger } from '../messenger.js'
import { createDispatcher } from './dispatcher.js'
import { handleRequest } from './request.js'

/**
 * MessengerApi as JSON lines: one request per stdin line, one response per stdout line
 * (matched by `id`), events as lines of their own. Requests run concurrently; bad lines get
 * an error response (see handleRequest) and the loop goes on. Resolves when input ends or
 * `signal` aborts.
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
      const p = handleRequest(line, dispatch).then(write)
      inflight.add(p)
      void p.finally(() => inflight.delete(p))
    }
    await Promise.all(inflight)
  } finally {
    signal?.removeEventListener('abort', onAbort)
    off()
  }
}
