/**
 * The public face of @gridlink/node is what a user runs; internals are behind ./internal (and
 * the package's exports map and build entries agree on it).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as pub from '@gridlink/node';
import * as internal from '@gridlink/node/internal';

describe('@gridlink/node entry points', () => {
  it('the main entry exports the user-facing API and no internals', () => {
    expect(Object.keys(pub).sort()).toEqual(
      [
        'CACHE_PREFIX',
        'CLUSTER_KEY',
        // The bucket name rule the admin CLI checks --bucket with before connecting.
        'isBucketName',
        // How to start the gridlink-node process (ADR 0046).
        'NODE_V8_FLAGS',
        'youngGenerationConfigured',
        'ControlPlaneUnavailableError',
        // NatsControlPlane.connect({ create: false }) on a bucket that does not exist (the admin CLI).
        'ControlPlaneBucketMissingError',
        // The bucket was deleted or created anew (ADR 0028): whoever embeds a node can tell why it stopped.
        'ControlPlaneResetError',
        'NatsControlPlane',
        'parseCli',
        // The credentials file check of gridlink-node's --nats-creds, which the admin CLI's --nats-creds runs too.
        'checkNatsCredsFile',
        // A flag's GRIDLINK_* variable (--nats-user: GRIDLINK_NATS_USER): the admin CLI reads the same ones.
        'envNameOf',
        'fencedMembers',
        // The safety rule of /health/safe from a topology record: the admin CLI's `safe` and
        // dashboard judge with the same code (no twin to drift apart).
        'clusterSafety',
        'nodeSafety',
        'wantedCopies',
        // The GRIDLINK_* variables gridlink-node warns of (no flag's): a manifest check can refuse them.
        'unknownVariables',
        'parseNatsServers',
        'CasConflictError',
        'DEFAULT_AUTO_ADJUST',
        'DEFAULT_TIMING',
        'GridNode',
        'GridNodeError',
        'LEASE_PREFIX',
        'LocalCluster',
        'MemoryControlPlane',
        'NodeConfigError',
        'NodeStore',
        'PeerUnavailableError',
        'StoreError',
        'TOPOLOGY_KEY',
        'consoleLogger',
        // Accepting losses (lost partitions and partitions lost for one cache): the admin CLI's reset-lost.
        'lostAnywhere',
        'withLossAccepted',
        // Shape checks of control plane records (ADR 0048): the admin CLI refuses a malformed topology.
        'topologyProblem',
        'leaseProblem',
        'resolveNodeOptions',
        'silentLogger',
        'startNode',
      ].sort(),
    );
  });

  it('./internal holds the pure functions, the replica state machine and the parts tests need', () => {
    for (const name of ['nextTopology', 'initialTopology', 'partitionMapOf', 'roleOf', 'routeRequest', 'step', 'onRecord', 'Scheduler', 'PeerClient', 'NodeStore', 'TOPOLOGY_KEY']) {
      expect(internal).toHaveProperty(name);
    }
    expect(internal.NodeStore).toBe(pub.NodeStore);
  });

  it('package.json exports ./internal from the files the build emits', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { exports: Record<string, { import: { default: string }; require: { default: string } }> };
    expect(pkg.exports['./internal']?.import.default).toBe('./dist/internal.js');
    expect(pkg.exports['./internal']?.require.default).toBe('./dist/internal.cjs');
    const tsup = readFileSync(new URL('../tsup.config.ts', import.meta.url), 'utf8');
    expect(tsup).toContain("internal: 'src/internal.ts'");
  });
});
