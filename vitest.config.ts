import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const pkg = (name: string): string =>
  fileURLToPath(new URL(`./packages/${name}/src/index.ts`, import.meta.url));

export default defineConfig({
  resolve: {
    alias: {
      // Subpaths before their package: an alias also matches the subpaths of its key.
      '@gridlink/node/internal': fileURLToPath(new URL('./packages/node/src/internal.ts', import.meta.url)),
      '@gridlink/client/internal': fileURLToPath(new URL('./packages/client/src/internal.ts', import.meta.url)),
      '@gridlink/affinity': pkg('affinity'),
      '@gridlink/protocol': pkg('protocol'),
      '@gridlink/node': pkg('node'),
      // Subpath before its package: the first matching alias wins.
      '@gridlink/client/nats': fileURLToPath(new URL('./packages/client/src/nats.ts', import.meta.url)),
      '@gridlink/client': pkg('client'),
      '@gridlink/testkit': pkg('testkit'),
      '@gridlink/dedupe': pkg('dedupe'),
      '@gridlink/express': pkg('express'),
      '@gridlink/nest': pkg('nest'),
      '@gridlink/messaging': pkg('messaging'),
      '@gridlink/admin': pkg('admin'),
    },
  },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'packages/*/compat/*/test/**/*.test.ts', 'examples/test/**/*.test.ts', 'examples/api-*/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The JSON report feeds the one-line summary printed by .ci/run.
    reporters: ['default', 'json'],
    outputFile: { json: '.vitest-results.json' },
  },
});
