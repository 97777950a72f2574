// The utility process's entry (utilityProcess.fork in main.ts): hosts core, so libp2p,
// libsignal and level never run on the main process's thread (Chromium's UI thread).
import '../../core/polyfill.js'
import type { FromCore, ToCore } from './core-channel.js'
import { serveCore } from './core-host.js'

const parent = process.parentPort
serveCore({
  post: (message: ToCore | FromCore) => { parent.postMessage(message) },
  onMessage: (listener) => { parent.on('message', (e) => { listener(e.data) }) }
})
