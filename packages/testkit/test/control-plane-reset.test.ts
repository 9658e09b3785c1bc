/**
 * ADR 0028 on real processes: NATS loses the bucket the cluster lived on (here: deleted and
 * created anew, as a nats-server restarted on an empty store would present it). Every
 * `gridlink-node` process exits with code 3 instead of serving on beside whatever forms on the
 * new bucket; started again (as a process manager would), they form a new, empty cluster.
 *
 * Needs `packages/node/dist/cli.js` (build the node package first).
 */
import { describe, expect, it } from 'vitest';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { NatsControlPlane, TOPOLOGY_KEY, type TopologyRecord } from '@gridlink/node';
import { waitFor } from '@gridlink/testkit';
import { processClusterFixture } from './helpers/load.js';

const fx = processClusterFixture({ nodes: 2, natsServers: 1, partitions: 16 });

describe('the control plane loses its state under gridlink-node processes', () => {
  it('every node exits with code 3; started again they form a new cluster and serve', async () => {
    const cache = fx.client.cache<string>('before');
    await cache.put('k', 'v');
    const nc = await connect({ servers: fx.cluster.natsUrls });
    try {
      const kvm = new Kvm(nc);
      await (await kvm.open(fx.cluster.bucket)).destroy();
      await kvm.create(fx.cluster.bucket);
    } finally {
      await nc.close();
    }
    await waitFor('both nodes to exit', () => fx.cluster.nodes.every((n) => !n.running), 15_000);
    expect(fx.cluster.nodes.map((n) => n.exitCode)).toEqual([3, 3]);
    for (const n of fx.cluster.nodes) expect(n.log).toMatch(/control plane lost its state/);
    for (const n of fx.cluster.nodes) await n.start();
    // The kit's own handle on the bucket was reset too: look through a new one.
    const plane = await NatsControlPlane.connect({ servers: fx.cluster.natsUrls, bucket: fx.cluster.bucket, create: false });
    try {
      await waitFor('a new cluster of both', async () => Object.keys((await plane.get<TopologyRecord>(TOPOLOGY_KEY))?.value.members ?? {}).length === 2, 30_000);
    } finally {
      await plane.close();
    }
    // The client finds the nodes again at the same addresses; the data went with the old bucket.
    await waitFor('the new cluster to answer', async () => {
      try {
        await fx.client.cache<string>('after').put('k', 'w');
        return true;
      } catch {
        return false;
      }
    }, 30_000);
    expect(await fx.client.cache<string>('after').get('k')).toBe('w');
    expect(await cache.get('k')).toBeUndefined();
  });
});
