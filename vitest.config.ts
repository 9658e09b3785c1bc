import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const pkg = (name: string): string =>
  fileURLToPath(new URL(`./packages/${name}/src/index.ts`, import.meta.url));

const ALL = ['packages/*/test/**/*.test.ts', 'packages/*/compat/*/test/**/*.test.ts', 'examples/test/**/*.test.ts', 'examples/api-*/**/*.test.ts'];
const ALONE = [
  'packages/testkit/test/**/*.test.ts',
  'packages/admin/test/cli-process.test.ts',
  'examples/test/**/*.test.ts',
  'examples/api-*/**/*.test.ts',
  'packages/express/test/cluster.test.ts',
  'packages/nest/test/cluster.test.ts',
  'packages/messaging/test/chaos.test.ts',
  'packages/messaging/test/failover.test.ts',
  'packages/messaging/test/jobs-stalled-submit.test.ts',
  'packages/node/test/nats-control-plane.test.ts',
  'packages/node/test/nats-vouch.test.ts',
  'packages/node/test/control-plane-outage.test.ts',
];
/**
 * In-process files that count what the whole process holds (sockets, timers made by the
 * packages' sources, unhandled rejections) while they run: each in its own fork, so that nothing
 * a file before it left running in the same fork can be counted as theirs.
 */
const ISOLATED = [
  'packages/client/test/leaks.test.ts',
  'packages/client/test/close-finder.test.ts',
  'packages/client/test/short-deadline.test.ts',
  'packages/client/test/failover.property.test.ts',
  'packages/node/test/leaks.test.ts',
  'packages/node/test/locks.handles.test.ts',
];
/**
 * Files of ALONE that spawn processes or proxies but count on no timing under faults (examples
 * served and stopped, built entry points loaded, a node's flags and its second SIGTERM, the fault
 * proxy itself, ports): two at a time, after the ALONE ones.
 */
const PAIRED = [
  'examples/test/api-serve.test.ts',
  'examples/test/published-entries.test.ts',
  'examples/api-*/**/*.test.ts',
  'packages/testkit/test/cli-signals.test.ts',
  'packages/testkit/test/node-v8-flags.test.ts',
  'packages/testkit/test/fault-proxy.test.ts',
  'packages/testkit/test/ports.test.ts',
];

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
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two test files at a time (vitest's default on 2 CPUs is one), except the files below.
    maxWorkers: 2,
    projects: [
      {
        // Files share a fork and its loaded modules (isolate: false): loading the packages from
        // source anew for each of ~180 files took about 40 % of this project's time. Each file
        // closes what it starts; those that count the process's resources are ISOLATED.
        extends: true,
        test: { name: 'in-process', include: ALL, exclude: [...ALONE, ...ISOLATED], isolate: false },
      },
      {
        extends: true,
        test: { name: 'in-process-isolated', include: ISOLATED },
      },
      {
        // Child processes (grid nodes, nats-server clusters, app instances) and tests that count on
        // timing under faults (no member declared gone through a stall): one file at a time, after
        // the others, so no other test file competes with them for the two CPUs.
        extends: true,
        test: { name: 'processes', include: ALONE, exclude: PAIRED, fileParallelism: false, sequence: { groupOrder: 1 } },
      },
      {
        extends: true,
        test: { name: 'processes-paired', include: PAIRED, sequence: { groupOrder: 2 } },
      },
    ],
    // The JSON report feeds the one-line summary printed by .ci/run.
    reporters: ['default', 'json'],
    outputFile: { json: '.vitest-results.json' },
  },
});
