import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { DirectoryService } from '../../relay/directory/service.js'
import { DEFAULT_MAILBOX_LIMITS, MailboxService } from '../../relay/mailbox/service.js'
import { MailboxStore } from '../../relay/mailbox/store.js'
import { PrekeyStore } from '../../relay/prekeys/store.js'
import { createRelayNode, DEFAULT_RELAY_LIMITS, type RelayLibp2p } from '../../relay/relay-node.js'
import { removeDir, tempDir } from './messengers.js'

/** A real relay (mailbox, directory, prekeys) in this process, on loopback, with its own level databases. */
export interface TestRelay {
  node: RelayLibp2p
  addr: string
  mailbox: MailboxService
  /** The mailbox's store (what it holds for whom). */
  mail: MailboxStore
  stop(): Promise<void>
}

export async function startRelay (): Promise<TestRelay> {
  const dir = await tempDir('parley-relay-')
  const prekeys = new PrekeyStore(join(dir, 'prekeys'))
  await prekeys.open()
  const node = await createRelayNode({ prekeys: { store: prekeys }, privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], limits: { ...DEFAULT_RELAY_LIMITS, inboundConnectionThreshold: 1000 } })
  const store = new MailboxStore(join(dir, 'mailbox'))
  await store.open()
  const mailbox = new MailboxService(node, store, DEFAULT_MAILBOX_LIMITS)
  await mailbox.start()
  const directory = new DirectoryService(node)
  await directory.start()
  await node.start()
  return {
    node,
    addr: node.getMultiaddrs()[0]?.toString() ?? '',
    mailbox,
    mail: store,
    async stop () {
      await mailbox.stop()
      await directory.stop()
      await node.stop()
      await store.close()
      await prekeys.close()
      await removeDir(dir)
    }
  }
}
