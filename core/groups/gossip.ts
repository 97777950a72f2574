import { TopicValidatorResult, type Message } from '@libp2p/gossipsub'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { InvalidRequestError, MessageTooLargeError, NotRunningError } from '../errors.js'
import { isGroupId, type GroupId, type PeerIdString } from '../ids.js'
import { forComponent } from '../logger.js'
import { scoreTopic, type ParleyPubSub } from '../net/node.js'

const log = forComponent('group-gossip')

/** What the handler decided about one gossip payload. */
export type GossipVerdict = 'accept' | 'deliver' | 'reject' | 'ignore'

/**
 * Decrypts, verifies and applies one payload published on a group's topic by `from` (the
 * author it names, not the peer that forwarded it; nothing in gossipsub vouches for it, so
 * the handler must: a sender-key ciphertext decrypts and verifies only under its real
 * author's key). Its verdict decides propagation:
 * - 'accept': valid; delivered and forwarded to the rest of the mesh.
 * - 'deliver': valid and delivered here, not forwarded: its author sent it to every member
 *   itself (see GroupManager), so a forward would only be a duplicate. Gossipsub treats it as
 *   ignored: no forward, no penalty, not kept for IWANT (its author serves those), and no
 *   first-delivery credit for the peer it came from.
 * - 'reject': provably bad whatever our state (bad ciphertext, a record that is not its
 *   sender's, malformed); dropped and the forwarding peer's score is lowered (P4).
 * - 'ignore': dropped without penalty: not applicable here and now (e.g. no sender key yet,
 *   not a member in OUR current state). Honest peers whose state differs from ours must not be
 *   punished, so state-dependent refusals should be 'ignore'.
 * Keep it fast (gossipsub expects validation well under 100 ms).
 */
export type GossipHandler = (group: GroupId, from: PeerIdString, data: Uint8Array) => Promise<GossipVerdict>

export interface GroupGossipOptions {
  /** Largest payload handed to the handler or published (bytes). Default 128 KiB. */
  maxMessageBytes?: number
}

export const DEFAULT_MAX_GOSSIP_BYTES = 128 * 1024
/**
 * Version 3: unsigned gossipsub messages whose payload names its author (see GroupGossip;
 * version 2 had the same payload, but a bare record inside its ciphertext where version 3 has
 * GroupManager's gossip body).
 */
const TOPIC_PREFIX = '/parley/group/3/'
/** First byte of a gossip payload: this layout. */
const PAYLOAD_VERSION = 1

const VERDICTS: Record<GossipVerdict, TopicValidatorResult> = {
  accept: TopicValidatorResult.Accept,
  deliver: TopicValidatorResult.Ignore,
  reject: TopicValidatorResult.Reject,
  ignore: TopicValidatorResult.Ignore
}

/**
 * One gossipsub topic per group. Gossipsub runs with StrictNoSign (GOSSIP_OPTIONS): a message
 * carries no libp2p signature, `from` or seqno, and its id is a hash of its data. The author
 * is named inside the payload instead, `[1][length][author peer id, as text][ciphertext]`,
 * and proven by the ciphertext: a Signal sender-key message is signed with its author's
 * sender signing key (the handler also checks that the record inside names that author). The
 * gossipsub signature (an Ed25519 verify, and a key import, per copy received) proved nothing
 * more, and was a twentieth of a 50-member group's CPU.
 *
 * Joining installs a topic validator that hands each new message to the handler exactly once
 * (gossipsub drops duplicates before validation) and turns its verdict into gossipsub's: the
 * validator does all the work, the 'message' event is never used (a sender-key ciphertext can
 * be decrypted only once). Signed messages (gossipsub itself), payloads that do not name an
 * author and payloads over `maxMessageBytes` are rejected before the handler; topics not
 * joined never reach it. Handler calls for one group run one at a time, in arrival order, so
 * sender-key state and the group doc are never updated concurrently by gossip.
 *
 * @example
 * const gossip = new GroupGossip(node.services.pubsub, node.peerId, async (group, from, data) => {
 *   const ok = await manager.applyGossip(group, from, data)
 *   return ok ? 'accept' : 'ignore'
 * })
 * gossip.join(group)
 * const { recipients, peers } = await gossip.publish(group, ciphertext)
 */
export class GroupGossip {
  private readonly pubsub: ParleyPubSub
  private readonly handler: GossipHandler
  private readonly maxMessageBytes: number
  private readonly joined = new Set<GroupId>()
  /** The tail of each group's chain of handler calls. */
  private readonly queues = new Map<GroupId, Promise<unknown>>()
  private stopped = false

  /** Our payload header: version, length, our peer id. */
  private readonly header: Uint8Array

  constructor (pubsub: ParleyPubSub, self: PeerId, handler: GossipHandler, options: GroupGossipOptions = {}) {
    this.pubsub = pubsub
    this.handler = handler
    this.header = authorHeader(self)
    this.maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_GOSSIP_BYTES
  }

  /** The gossipsub topic of a group: `/parley/group/3/<groupId>`. */
  static topicOf (group: GroupId): string {
    return TOPIC_PREFIX + group
  }

  /** Subscribe to the group's topic and start handing its messages to the handler. */
  join (group: GroupId): void {
    this.requireRunning()
    checkGroup(group)
    if (this.joined.has(group)) return
    const topic = GroupGossip.topicOf(group)
    scoreTopic(this.pubsub, topic)
    this.pubsub.topicValidators.set(topic, async (peer, msg) => await this.validate(group, peer, msg))
    this.joined.add(group)
    this.pubsub.subscribe(topic)
    log('joined %s', group)
  }

  /** Unsubscribe and stop handing the group's messages to the handler (queued ones are ignored). */
  leave (group: GroupId): void {
    if (!this.joined.delete(group)) return
    const topic = GroupGossip.topicOf(group)
    this.pubsub.topicValidators.delete(topic)
    if (this.pubsub.isStarted()) this.pubsub.unsubscribe(topic)
    log('left %s', group)
  }

  /**
   * Publish one payload to the group's online subscribers. Resolves with the number of peers it
   * was sent to directly (0 when nobody is subscribed: not an error) and who they are.
   * Publishing does not require `join` (a non-member publishes nothing anyone accepts, though).
   */
  async publish (group: GroupId, data: Uint8Array): Promise<{ recipients: number, peers: PeerIdString[] }> {
    this.requireRunning()
    checkGroup(group)
    if (data.byteLength > this.maxMessageBytes) {
      throw new MessageTooLargeError(`gossip payload of ${data.byteLength} bytes is over ${this.maxMessageBytes}`)
    }
    const payload = new Uint8Array(this.header.byteLength + data.byteLength)
    payload.set(this.header)
    payload.set(data, this.header.byteLength)
    const result = await this.pubsub.publish(GroupGossip.topicOf(group), payload)
    return { recipients: result.recipients.length, peers: result.recipients.map((p) => p.toString() as PeerIdString) }
  }

  /** Connected peers known to be subscribed to the group's topic. */
  subscribers (group: GroupId): PeerIdString[] {
    return this.pubsub.getSubscribers(GroupGossip.topicOf(group)).map((p) => p.toString() as PeerIdString)
  }

  /** The groups joined, in join order. */
  groups (): GroupId[] {
    return [...this.joined]
  }

  /** Leave every group; later `join`/`publish` throw `NotRunningError`. */
  stop (): void {
    for (const group of [...this.joined]) this.leave(group)
    this.stopped = true
  }

  private async validate (group: GroupId, _peer: PeerId, msg: Message): Promise<TopicValidatorResult> {
    // StrictNoSign already rejects signed messages before validators run; this guards against
    // a configuration change.
    if (msg.type !== 'unsigned') return TopicValidatorResult.Reject
    const parsed = parsePayload(msg.data)
    if (parsed === undefined) {
      log('rejected a %d-byte message on %s that names no author', msg.data.byteLength, group)
      return TopicValidatorResult.Reject
    }
    if (parsed.data.byteLength > this.maxMessageBytes) {
      log('rejected %d-byte message from %s on %s', parsed.data.byteLength, parsed.from, group)
      return TopicValidatorResult.Reject
    }
    const { from, data } = parsed
    const run = async (): Promise<TopicValidatorResult> => {
      if (!this.joined.has(group)) return TopicValidatorResult.Ignore
      try {
        const verdict = await this.handler(group, from, data)
        return VERDICTS[verdict] ?? TopicValidatorResult.Ignore
      } catch (err) {
        log('handler threw for a message from %s on %s (ignored): %e', from, group, err)
        return TopicValidatorResult.Ignore
      }
    }
    const result = (this.queues.get(group) ?? Promise.resolve()).then(run)
    this.queues.set(group, result)
    try {
      return await result
    } finally {
      if (this.queues.get(group) === result) this.queues.delete(group)
    }
  }

  private requireRunning (): void {
    if (this.stopped || !this.pubsub.isStarted()) throw new NotRunningError('group gossip is not running')
  }
}

function checkGroup (group: GroupId): void {
  if (!isGroupId(group)) throw new InvalidRequestError(`not a group id: ${String(group)}`)
}

const te = new TextEncoder()
const td = new TextDecoder()

function authorHeader (self: PeerId): Uint8Array {
  const id = te.encode(self.toString())
  if (id.byteLength > 255) throw new Error(`peer id of ${id.byteLength} bytes does not fit a gossip header`)
  return Uint8Array.from([PAYLOAD_VERSION, id.byteLength, ...id])
}

/** The author and ciphertext of a gossip payload, or undefined if it does not name an author. */
function parsePayload (payload: Uint8Array): { from: PeerIdString, data: Uint8Array } | undefined {
  if (payload.byteLength < 2 || payload[0] !== PAYLOAD_VERSION) return undefined
  const end = 2 + (payload[1] as number)
  if (payload.byteLength < end) return undefined
  const text = td.decode(payload.subarray(2, end))
  if (!isAuthorName(text)) return undefined
  return { from: text as PeerIdString, data: payload.subarray(end) }
}

/** Author names already seen to be peer ids in canonical form (bounded: cleared when full). */
const knownAuthors = new Set<string>()
const MAX_KNOWN_AUTHORS = 4096

/**
 * True if `text` is a peer id written the way it prints (the form payloads must use). Each
 * member's name comes with every message it sends, so the answer is remembered: parsing a
 * peer id (base58 and multihash decoding, a key import) was about 3% of a 50-member
 * group's CPU.
 */
function isAuthorName (text: string): boolean {
  if (knownAuthors.has(text)) return true
  try {
    if (peerIdFromString(text).toString() !== text) return false
  } catch {
    return false
  }
  if (knownAuthors.size >= MAX_KNOWN_AUTHORS) knownAuthors.clear()
  knownAuthors.add(text)
  return true
}
