import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.base.js';

export default defineConfig({
  ...packageBuild,
  // The public entry and the documented internal one (tests, benches): see docs/client.md.
  entry: ['src/index.ts', 'src/internal.ts'],
  // p-retry (and its dependency) ship as ES modules only: bundle them so the CommonJS build also
  // loads on Node versions without require(esm).
  noExternal: ['p-retry', 'is-network-error'],
});
