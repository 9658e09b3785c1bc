import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.base.js';

export default defineConfig({
  ...packageBuild,
  // The public entry, the documented internal one (tests, benches: see docs/client.md) and
  // `@gridlink/client/nats`, the NATS address finder, separate so the main entry never loads NATS.
  entry: { index: 'src/index.ts', internal: 'src/internal.ts', nats: 'src/nats.ts' },
  // p-retry (and its dependency) ship as ES modules only: bundle them so the CommonJS build also
  // loads on Node versions without require(esm).
  noExternal: ['p-retry', 'is-network-error'],
  external: ['@nats-io/kv', '@nats-io/transport-node'],
});
