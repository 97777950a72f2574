/**
 * A gate for work that may only run while something else is ready: before `open()` work waits
 * at the gate, while open it runs, after `close()` it is refused at once with the error the
 * gate was made with. `close()` resolves once the work already inside has finished.
 *
 * The Messenger handles inbound envelopes through one: they may carry group payloads (an
 * invite, a sender key, a record's copy), which must not arrive while the group manager is
 * not open, be acknowledged, and be lost. An envelope refused this way is not acknowledged,
 * so its sender keeps it and tries again.
 *
 * @example
 * const gate = new Gate(() => new NotRunningError('stopping'))
 * const handled = gate.run(async () => await handle(envelope)) // waits
 * gate.open()                                                   // now it runs
 * await gate.close()                                            // refuses new work, waits for `handled`
 */
export class Gate {
  private state: 'waiting' | 'open' | 'closed' = 'waiting'
  private readonly opened: Promise<void>
  private release: () => void = () => {}
  private refuse: (err: Error) => void = () => {}
  private readonly inside = new Set<Promise<unknown>>()

  constructor (private readonly closedError: () => Error) {
    this.opened = new Promise<void>((resolve, reject) => {
      this.release = resolve
      this.refuse = reject
    })
    // Refusal reaches every waiter through run(); the promise itself needs no other handler.
    this.opened.catch(() => {})
  }

  /** Let waiting and later work run (no effect once closed). */
  open (): void {
    if (this.state !== 'waiting') return
    this.state = 'open'
    this.release()
  }

  /** Refuse waiting and later work, and wait for the work already running to end. */
  async close (): Promise<void> {
    if (this.state !== 'closed') {
      this.state = 'closed'
      this.refuse(this.closedError())
    }
    await Promise.allSettled([...this.inside])
  }

  /** Run `fn` once the gate is open; rejects with the gate's error if it is (or gets) closed first. */
  async run<T> (fn: () => Promise<T>): Promise<T> {
    if (this.state === 'waiting') await this.opened
    if (this.state !== 'open') throw this.closedError()
    const work = fn()
    this.inside.add(work)
    try {
      return await work
    } finally {
      this.inside.delete(work)
    }
  }
}
