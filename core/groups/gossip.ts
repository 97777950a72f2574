import { TopicValidatorResult, type Message } from '@libp2p/gossipsub'
import type { PeerId } from '@libp2p/interface'
import { InvalidRequestError, MessageTooLargeError, NotRunningError } from '../errors.js'
import { isGroupId, type GroupId, type PeerIdString } from '../ids.js'
import { forComponent } from '../logger.js'
import { scoreTopic, type ParleyPubSub } from '../net/node.js'

const log = forComponent('group-gossip')

/** What the handler decided about one gossip payload. */
export type GossipVerdict = 'accept' | 'reject' | 'ignore'

/**
 * Decrypts, verifies and applies one payload published on a group's topic by `from` (the
 * message's signed author, not the peer that forwarded it). Its verdict decides propagation:
 * - 'accept': valid; delivered and forwarded to the rest of the mesh.
 * - 'reject': provably bad whatever our state (bad ciphertext, bad record signature,
 *   malformed); dropped and the forwarding peer's score is lowered (P4).
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
const TOPIC_PREFIX = '/parley/group/1/'

const VERDICTS: Record<GossipVerdict, TopicValidatorResult> = {
  accept: TopicValidatorResult.Accept,
  reject: TopicValidatorResult.Reject,
  ignore: TopicValidatorResult.Ignore
}

/**
 * One gossipsub topic per group. Joining installs a topic validator that hands each new
 * message to the handler exactly once (gossipsub drops duplicates before validation) and
 * turns its verdict into gossipsub's: the validator does all the work, the 'message' event is
 * never used (a sender-key ciphertext can be decrypted only once). Unsigned messages and
 * payloads over `maxMessageBytes` are rejected before the handler; topics not joined never
 * reach it. Handler calls for one group run one at a time, in arrival order, so sender-key
 * state and the group doc are never updated concurrently by gossip.
 *
 * @example
 * const gossip = new GroupGossip(node.services.pubsub, async (group, from, data) => {
 *   const ok = await manager.applyGossip(group, from, data)
 *   return ok ? 'accept' : 'ignore'
 * })
 * gossip.join(group)
 * const { recipients } = await gossip.publish(group, ciphertext)
 */
export class GroupGossip {
  private readonly pubsub: ParleyPubSub
  private readonly handler: GossipHandler
  private readonly maxMessageBytes: number
  private readonly joined = new Set<GroupId>()
  /** The tail of each group's chain of handler calls. */
  private readonly queues = new Map<GroupId, Promise<unknown>>()
  private stopped = false

  constructor (pubsub: ParleyPubSub, handler: GossipHandler, options: GroupGossipOptions = {}) {
    this.pubsub = pubsub
    this.handler = handler
    this.maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_GOSSIP_BYTES
  }

  /** The gossipsub topic of a group: `/parley/group/1/<groupId>`. */
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
   * was sent to directly (0 when nobody is subscribed: not an error). Publishing does not
   * require `join` (a non-member publishes nothing anyone accepts, though).
   */
  async publish (group: GroupId, data: Uint8Array): Promise<{ recipients: number }> {
    this.requireRunning()
    checkGroup(group)
    if (data.byteLength > this.maxMessageBytes) {
      throw new MessageTooLargeError(`gossip payload of ${data.byteLength} bytes is over ${this.maxMessageBytes}`)
    }
    const result = await this.pubsub.publish(GroupGossip.topicOf(group), data)
    return { recipients: result.recipients.length }
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
    // StrictSign already rejects unsigned messages before validators run; this guards against a
    // configuration change, since the handler relies on the signed author.
    if (msg.type !== 'signed') return TopicValidatorResult.Reject
    if (msg.data.byteLength > this.maxMessageBytes) {
      log('rejected %d-byte message from %p on %s', msg.data.byteLength, msg.from, group)
      return TopicValidatorResult.Reject
    }
    const from = msg.from.toString() as PeerIdString
    const run = async (): Promise<TopicValidatorResult> => {
      if (!this.joined.has(group)) return TopicValidatorResult.Ignore
      try {
        const verdict = await this.handler(group, from, msg.data)
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
