import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.base.js';

export default defineConfig({
  ...packageBuild,
  // p-retry (and its dependency) ship as ES modules only: bundle them so the CommonJS build also
  // loads on Node versions without require(esm).
  noExternal: ['p-retry', 'is-network-error'],
});
