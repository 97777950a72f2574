// Builds the renderer into dist/renderer, which the web shell (and the Electron window) serve.
import react from '@vitejs/plugin-react'
import { defineConfig } from 'vite'

export default defineConfig({
  root: import.meta.dirname,
  base: './',
  plugins: [react()],
  build: {
    outDir: '../../dist/renderer',
    emptyOutDir: true,
    sourcemap: true,
    // The page's CSP allows no inline scripts or styles: keep every asset a file.
    assetsInlineLimit: 0
  },
  logLevel: 'warn'
})
