import { defineConfig } from 'vite'
import react from '@vitejs/plugin-react'

// The build goes straight into the Go package that embeds it; `make ui`
// runs it, `make ui-check` compares a fresh build with the committed one.
// `npm run dev` proxies the API and session endpoints to a gateway
// (HAUL_URL, default http://localhost:8080).
const target = process.env.HAUL_URL || 'http://localhost:8080'

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: '../internal/ui/dist',
    emptyOutDir: true,
    target: 'es2022',
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 400,
  },
  server: {
    proxy: {
      '/haul.api.v1.': target,
      '/ui/': target,
    },
  },
})
