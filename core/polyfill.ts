/**
 * What must be in place before libp2p loads; every entry point imports this module first.
 *
 * - libp2p 3 calls `Promise.withResolvers`, which Node adds in 22: polyfilled, so Parley also
 *   runs on Node 20.19+.
 * - libp2p's logger (weald, a fork of `debug`) decides colours by calling isatty(stderr)
 *   each time it makes a logger, and libp2p makes several for every stream it opens (a
 *   ping, a message): measurable in a busy node. Deciding once here, through the
 *   `DEBUG_COLORS` variable weald reads at load (one the user set wins), gives the same
 *   colours without the system call per stream.
 */
import { isatty } from 'node:tty'

process.env.DEBUG_COLORS ??= isatty(2) ? 'yes' : 'no'

interface Resolvers<T> {
  promise: Promise<T>
  resolve: (value: T | PromiseLike<T>) => void
  reject: (reason?: unknown) => void
}

const P = Promise as unknown as { withResolvers?: <T>() => Resolvers<T> }

if (typeof P.withResolvers !== 'function') {
  P.withResolvers = function withResolvers<T> (): Resolvers<T> {
    let resolve!: Resolvers<T>['resolve']
    let reject!: Resolvers<T>['reject']
    const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

export {}
