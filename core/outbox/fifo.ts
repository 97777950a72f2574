/**
 * A first-in first-out queue with O(1) take from the front (Array#shift is O(n) once V8
 * stops treating a large array as a fast deque, which hurt with 50k+ queued entries).
 */
export class Fifo<T> {
  private items: T[] = []
  private head = 0

  get length (): number {
    return this.items.length - this.head
  }

  push (item: T): void {
    this.items.push(item)
  }

  peek (): T | undefined {
    return this.items[this.head]
  }

  shift (): T | undefined {
    if (this.head >= this.items.length) return undefined
    const item = this.items[this.head]
    this.items[this.head] = undefined as T // let it be collected
    this.head++
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return item
  }

  /** Put `items` back in front, in their order (retrying what was in flight). */
  unshiftAll (items: Iterable<T>): void {
    this.items = [...items, ...this.items.slice(this.head)]
    this.head = 0
  }

  /** Remove and return every item matching `pred`, keeping the others in order. */
  removeWhere (pred: (item: T) => boolean): T[] {
    const removed: T[] = []
    const kept: T[] = []
    for (let i = this.head; i < this.items.length; i++) {
      const item = this.items[i] as T
      if (pred(item)) removed.push(item)
      else kept.push(item)
    }
    this.items = kept
    this.head = 0
    return removed
  }
}
