/**
 * `stats().nodes` and the client's per-node state follow the cluster: a node that has left for
 * good (out of the partition map, no connection) is forgotten, so a long-lived client under
 * rolling restarts with new node ids, or a scaled-down cluster, does not accumulate the ids (and
 * latency histograms) of every node it ever talked to. A node that is only down for a while
 * (still in the map) keeps its counters. Against a real embedded cluster on 127.0.0.1.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';
import { GridClient } from '@gridlink/client';
import { waitFor } from './helpers/wait.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const statIds = (client: GridClient): string[] => client.stats().nodes.map((n) => n.nodeId);
const mapIds = (client: GridClient): string[] => client.topology().nodes.map((n) => n.id).sort();

/** Writes keys until every node in `ids` has answered at least one request of `client`. */
async function touchEvery(client: GridClient, ids: string[]): Promise<void> {
  const cache = client.cache<number, number>('departed');
  let i = 0;
  await waitFor(
    async () => {
      for (let k = 0; k < 32; k++, i++) await cache.put(i, i);
      const s = client.stats().nodes;
      return ids.every((id) => s.some((n) => n.nodeId === id && n.requests > 0));
    },
    10_000,
    `requests answered by ${ids.join(', ')}`,
  );
}

/** A three-node cluster and a client connected to all three, each of which has answered it. */
async function threeNodesInUse(): Promise<{ cluster: LocalCluster; client: GridClient }> {
    const cluster = await LocalCluster.start({ nodes: 3, backups: 1, partitions: 16 });
    cleanups.push(() => cluster.stop());
    const client = await GridClient.connect({ endpoints: cluster.endpoints, connectTimeout: 3000 });
    client.on('error', () => undefined);
    cleanups.push(() => client.close());
    await waitFor(() => client.stats().nodes.filter((n) => n.connected).length === 3, 10_000, 'connected to the three nodes');
    await touchEvery(client, ['node-1', 'node-2', 'node-3']);
  return { cluster, client };
}

describe('nodes that leave the cluster for good', () => {
  it('a node replaced under a new id drops out of stats() once it is out of the map; one down for a while stays', async () => {
    const { cluster, client } = await threeNodesInUse();

    // A rolling restart under a new id: node-4 joins, node-3 goes away and the baseline follows.
    const added = await cluster.addNode();
    expect(added).toBe('node-4');
    await cluster.stopNode('node-3');
    await waitFor(() => !client.stats().nodes.some((n) => n.nodeId === 'node-3' && n.connected), 10_000, 'node-3 disconnected');
    // Down but still in the baseline (the map lists it, not alive): its counters stay.
    expect(mapIds(client)).toContain('node-3');
    expect(statIds(client)).toContain('node-3');

    await cluster.setBaseline(['node-1', 'node-2', 'node-4']);
    await cluster.waitForStable(10_000, ['node-1', 'node-2', 'node-4']);
    await waitFor(() => !mapIds(client).includes('node-3') && mapIds(client).includes('node-4'), 10_000, 'the client map without node-3');
    await waitFor(() => client.stats().nodes.some((n) => n.nodeId === 'node-4' && n.connected), 10_000, 'connected to node-4');
    await touchEvery(client, ['node-1', 'node-2', 'node-4']);

    await waitFor(() => !statIds(client).includes('node-3'), 5000, `node-3 gone from stats().nodes (${statIds(client).join(', ')})`);
    expect(statIds(client)).toEqual(['node-1', 'node-2', 'node-4']);
    // The counters of the nodes that stayed were kept.
    for (const n of client.stats().nodes) expect(n.requests, n.nodeId).toBeGreaterThan(0);
  });

  it('a scaled-down cluster: stats() lists no more nodes than the map and the connections', async () => {
    const { cluster, client } = await threeNodesInUse();

    // The baseline drops node-3 while it still runs; then it stops. Either order releases it.
    await cluster.setBaseline(['node-1', 'node-2']);
    await cluster.stopNode('node-3');
    await waitFor(() => !mapIds(client).includes('node-3'), 10_000, 'the client map without node-3');
    await waitFor(() => !statIds(client).includes('node-3'), 5000, `node-3 gone from stats().nodes (${statIds(client).join(', ')})`);
    expect(statIds(client)).toEqual(['node-1', 'node-2']);
    await touchEvery(client, ['node-1', 'node-2']);
    expect(statIds(client)).toEqual(['node-1', 'node-2']);
  });
});
