import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'node20',
  // p-retry (and its dependency) ship as ES modules only: bundle them so the CommonJS build also
  // loads on Node versions without require(esm).
  noExternal: ['p-retry', 'is-network-error'],
});
