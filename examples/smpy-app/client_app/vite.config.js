import { defineConfig } from "vite";

// Builds into ../static/dist (served by the app under /static/dist) with a manifest
// at ../static/dist/.vite/manifest.json that the app reads outside development.
export default defineConfig({
  base: "/static/dist/",
  build: {
    outDir: "../static/dist",
    emptyOutDir: true,
    manifest: true,
    rollupOptions: {
      input: "src/main.js",
    },
  },
  server: {
    port: 5173,
    strictPort: true,
    origin: "http://localhost:5173",
  },
});
