import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.base.js';

export default defineConfig({
  ...packageBuild,
  // `@gridlink/client/nats`: the NATS address finder, a separate entry so the main one never loads NATS.
  entry: { index: 'src/index.ts', nats: 'src/nats.ts' },
  // p-retry (and its dependency) ship as ES modules only: bundle them so the CommonJS build also
  // loads on Node versions without require(esm).
  noExternal: ['p-retry', 'is-network-error'],
  external: ['@nats-io/kv', '@nats-io/transport-node'],
});
