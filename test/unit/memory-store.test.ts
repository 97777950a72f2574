import '../../core/polyfill.js'
import { MemoryStore } from '../../core/store/memory-store.js'
import { runStoreSuite } from './store-suite.js'

runStoreSuite('MemoryStore', async () => {
  const store = new MemoryStore()
  await store.open()
  return { store, cleanup: async () => { await store.close() } }
})
