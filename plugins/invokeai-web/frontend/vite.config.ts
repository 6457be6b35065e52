/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The build goes into the Python package, which serves it at `/` (invokeai_web/app.py: STATIC_DIR).
// `npm run dev` proxies the API and Socket.IO to a local `invokeai serve` on port 9090.
export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "../src/invokeai_web/static",
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 600,
  },
  server: {
    proxy: {
      "/api": "http://127.0.0.1:9090",
      "/socket.io": { target: "http://127.0.0.1:9090", ws: true },
    },
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
