import { Level } from 'level'
import type { MessageId, PeerIdString } from '../../core/ids.js'
import { ulidFactory } from '../../core/ids.js'

/** One stored deposit. The envelope is opaque: the relay never looks inside. */
export interface StoredMail {
  id: string
  recipient: PeerIdString
  sender: PeerIdString
  envelope: Uint8Array<ArrayBuffer>
  depositedAt: number
  expiresAt: number
}

interface Row { id: string, sender: string, envelope: string, depositedAt: number, expiresAt: number }

const nextSeq = ulidFactory()
const pad = (n: number): string => n.toString(16).padStart(12, '0')

/**
 * The relay's mailbox on level: items per recipient in deposit order, an id index (dedupe,
 * ack by id) and an expiry index (TTL sweeps without a full scan). Every change is one
 * batch, awaited before the caller acknowledges anything, so a deposit the relay acked
 * survives a crash of the relay process. Per-recipient usage (count, bytes) is kept in memory
 * and rebuilt on open.
 *
 * Keys: `m!<recipient>\0<seq>` item, `i!<recipient>\0<id>` → seq, `e!<expiry>\0<recipient>\0<seq>`.
 */
export class MailboxStore {
  private readonly db: Level<string, string>
  private readonly usage = new Map<string, { count: number, bytes: number }>()

  constructor (location: string, private readonly sync = false) {
    this.db = new Level<string, string>(location, { valueEncoding: 'utf8' })
  }

  async open (): Promise<void> {
    await this.db.open()
    for await (const [key, value] of this.db.iterator({ gt: 'm!', lt: 'm"' })) {
      const recipient = key.slice(2, key.indexOf('\x00'))
      const row = JSON.parse(value) as Row
      this.addUsage(recipient, 1, Buffer.byteLength(row.envelope, 'base64'))
    }
  }

  async close (): Promise<void> {
    await this.db.close()
  }

  usageOf (recipient: string): { count: number, bytes: number } {
    return this.usage.get(recipient) ?? { count: 0, bytes: 0 }
  }

  /** Total items and bytes held (metrics). */
  totals (): { count: number, bytes: number, recipients: number } {
    let count = 0
    let bytes = 0
    for (const u of this.usage.values()) { count += u.count; bytes += u.bytes }
    return { count, bytes, recipients: this.usage.size }
  }

  /** For each (recipient, id): the expiry of the copy already stored, or undefined. Two reads in all. */
  async existing (keys: ReadonlyArray<{ recipient: string, id: string }>): Promise<Array<number | undefined>> {
    const seqs = await this.db.getMany(keys.map((k) => `i!${k.recipient}\x00${k.id}`))
    const hits = keys.map((k, i) => seqs[i] === undefined ? undefined : `m!${k.recipient}\x00${seqs[i] ?? ''}`)
    const rows = await this.db.getMany(hits.filter((h): h is string => h !== undefined))
    let r = 0
    return hits.map((h) => {
      if (h === undefined) return undefined
      const value = rows[r++]
      return value === undefined ? undefined : (JSON.parse(value) as Row).expiresAt
    })
  }

  /** Store these deposits in one durable batch. */
  async put (items: StoredMail[]): Promise<void> {
    const ops: Array<{ type: 'put', key: string, value: string }> = []
    for (const m of items) {
      const seq = nextSeq()
      const row: Row = { id: m.id, sender: m.sender, envelope: Buffer.from(m.envelope).toString('base64'), depositedAt: m.depositedAt, expiresAt: m.expiresAt }
      ops.push({ type: 'put', key: `m!${m.recipient}\x00${seq}`, value: JSON.stringify(row) })
      ops.push({ type: 'put', key: `i!${m.recipient}\x00${m.id}`, value: seq })
      ops.push({ type: 'put', key: `e!${pad(m.expiresAt)}\x00${m.recipient}\x00${seq}`, value: '' })
    }
    await this.db.batch(ops, { sync: this.sync })
    for (const m of items) this.addUsage(m.recipient, 1, m.envelope.byteLength)
  }

  /**
   * A recipient's items, oldest first, skipping expired ones, at most `limit` and (but for a
   * first item) at most `maxBytes` as encoded in a FETCH answer.
   */
  async list (recipient: string, limit: number, maxBytes: number, now: number): Promise<{ items: StoredMail[], more: boolean }> {
    const items: StoredMail[] = []
    let bytes = 0
    let more = false
    for await (const value of this.db.values({ gt: `m!${recipient}\x00`, lt: `m!${recipient}\x01` })) {
      const row = JSON.parse(value) as Row
      if (row.expiresAt <= now) continue
      const mail = toMail(recipient, row)
      const size = encodedSize(mail)
      if (items.length >= limit || (items.length > 0 && bytes + size > maxBytes)) { more = true; break }
      items.push(mail)
      bytes += size
    }
    return { items, more }
  }

  /** Delete a recipient's items by id; returns how many existed. */
  async remove (recipient: string, ids: readonly string[]): Promise<number> {
    const seqs = await this.db.getMany(ids.map((id) => `i!${recipient}\x00${id}`))
    const itemKeys = seqs.map((seq) => seq === undefined ? undefined : `m!${recipient}\x00${seq}`)
    const values = await this.db.getMany(itemKeys.filter((k): k is string => k !== undefined))
    const ops: Array<{ type: 'del', key: string }> = []
    let removed = 0
    let bytes = 0
    let vi = 0
    ids.forEach((id, i) => {
      const seq = seqs[i]
      if (seq === undefined) return
      const value = values[vi++]
      if (value === undefined) return
      const row = JSON.parse(value) as Row
      ops.push({ type: 'del', key: `m!${recipient}\x00${seq}` }, { type: 'del', key: `i!${recipient}\x00${id}` },
        { type: 'del', key: `e!${pad(row.expiresAt)}\x00${recipient}\x00${seq}` })
      removed++
      bytes += Buffer.byteLength(row.envelope, 'base64')
    })
    if (ops.length === 0) return 0
    await this.db.batch(ops, { sync: this.sync })
    this.addUsage(recipient, -removed, -bytes)
    return removed
  }

  /** Delete everything that expired by `now`; returns what went, for senders to learn of it later. */
  async sweep (now: number): Promise<Array<{ recipient: string, id: MessageId | string, sender: string }>> {
    const gone: Array<{ recipient: string, id: string, sender: string }> = []
    // Deletes the rows the expiry index names directly (not through the id index), so no
    // row can outlive its expiry whatever state the id index is in.
    const ops: Array<{ type: 'del', key: string } | { type: 'put', key: string, value: string }> = []
    const freed: Array<{ recipient: string, bytes: number }> = []
    for await (const key of this.db.keys({ gt: 'e!', lt: `e!${pad(now)}\x01` })) {
      const [, recipient, seq] = key.slice(2).split('\x00') as [string, string, string]
      ops.push({ type: 'del', key })
      const value = await this.db.get(`m!${recipient}\x00${seq}`)
      if (value === undefined) continue
      const row = JSON.parse(value) as Row
      ops.push({ type: 'del', key: `m!${recipient}\x00${seq}` })
      const indexed = await this.db.get(`i!${recipient}\x00${row.id}`)
      if (indexed === seq) ops.push({ type: 'del', key: `i!${recipient}\x00${row.id}` })
      gone.push({ recipient, id: row.id, sender: row.sender })
      freed.push({ recipient, bytes: Buffer.byteLength(row.envelope, 'base64') })
      // A tombstone so the sender can learn its message expired unread (EXPIRED request).
      ops.push({ type: 'put', key: `x!${row.sender}\x00${row.id}`, value: recipient })
    }
    if (ops.length === 0) return gone
    await this.db.batch(ops, { sync: this.sync })
    for (const f of freed) this.addUsage(f.recipient, -1, -f.bytes)
    return gone
  }

  /** A sender's deposits that expired unread, up to `limit`; they are forgotten once told. */
  async takeExpired (sender: string, limit: number): Promise<Array<{ id: string, recipient: string }>> {
    const out: Array<{ id: string, recipient: string }> = []
    const ops: Array<{ type: 'del', key: string }> = []
    for await (const [key, recipient] of this.db.iterator({ gt: `x!${sender}\x00`, lt: `x!${sender}\x01`, limit })) {
      out.push({ id: key.slice(key.indexOf('\x00') + 1), recipient })
      ops.push({ type: 'del', key })
    }
    if (ops.length > 0) await this.db.batch(ops, { sync: this.sync })
    return out
  }

  private addUsage (recipient: string, count: number, bytes: number): void {
    const u = this.usage.get(recipient) ?? { count: 0, bytes: 0 }
    u.count += count
    u.bytes += bytes
    if (u.count <= 0) this.usage.delete(recipient)
    else this.usage.set(recipient, u)
  }
}

function toMail (recipient: string, row: Row): StoredMail {
  return {
    id: row.id,
    recipient: recipient as PeerIdString,
    sender: row.sender as PeerIdString,
    envelope: new Uint8Array(Buffer.from(row.envelope, 'base64')),
    depositedAt: row.depositedAt,
    expiresAt: row.expiresAt
  }
}

/**
 * An upper bound of one item's size in a FETCH answer: its fields, their tags and length
 * prefixes, the two timestamps. Counting only envelopes let 1,024 items of 2 KiB overflow
 * the answer's frame limit, and such a mailbox could never be drained.
 */
export function encodedSize (mail: StoredMail): number {
  return mail.envelope.byteLength + Buffer.byteLength(mail.id) + Buffer.byteLength(mail.sender) + 48
}
