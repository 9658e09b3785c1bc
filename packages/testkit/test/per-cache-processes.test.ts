/**
 * Per-cache backups and the IGNORE loss policy (ADR 0038) on real processes: three
 * `gridlink-node` processes on one nats-server, a cluster started with backups = 0, a cache
 * created with backups = 2 and one with backups = 0 and IGNORE. Two of the three nodes are killed
 * (SIGKILL), one after the other: the deep cache keeps every entry, the IGNORE cache keeps what the
 * survivor led and serves the lost partitions again at once, empty, counting each loss in
 * `gridlink_node_partition_losses_ignored_total{cache}`; no partition is marked lost.
 *
 * Needs `packages/node/dist/cli.js` (build the node package first).
 */
import { describe, expect, it } from 'vitest';
import { partitionOf } from '@gridlink/affinity';
import { waitFor } from '@gridlink/testkit';
import { processClusterFixture } from './helpers/load.js';

const P = 16;
const fx = processClusterFixture({ nodes: 3, natsServers: 1, partitions: P, backups: 0, http: true });

async function ignoredLosses(id: string, cache: string): Promise<number> {
  const port = fx.cluster.node(id).httpPort!;
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('gridlink_node_partition_losses_ignored_total') && l.includes(`cache="${cache}"`));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('per-cache backups and IGNORE on gridlink-node processes', () => {
  it('a backups=2 cache survives two kills while a backups=0 IGNORE cache beside it serves its lost partitions empty', async () => {
    const safe = fx.client.cache<string, number>('safe');
    const scratch = fx.client.cache<string, number>('scratch');
    await safe.create({ backups: 2 });
    await scratch.create({ backups: 0, partitionLossPolicy: 'IGNORE' });
    // The registry raises the ranking to two backups: every partition gets three owners.
    let ranked = await fx.cluster.waitForMembers(fx.cluster.nodes.map((n) => n.id));
    await waitFor('three owners per partition, nothing syncing', async () => {
      ranked = (await fx.cluster.topology()) ?? ranked;
      return ranked.backups === 2 && ranked.owners.every((o) => o.length === 3) && ranked.syncing.every((s) => s.length === 0);
    });
    const keys = Array.from({ length: 60 }, (_, i) => `k${i}`);
    for (const [i, k] of keys.entries()) {
      await safe.put(k, i);
      await scratch.put(k, i);
    }
    const [a, b, survivor] = fx.cluster.nodes.map((n) => n.id) as [string, string, string];
    // scratch keeps exactly what the survivor led from the start: every other partition lost its
    // only copy with the first or the second kill.
    const ledBySurvivor = (k: string): boolean => ranked.owners[partitionOf(k, P)]![0] === survivor;

    await fx.cluster.node(a).kill();
    await fx.cluster.waitForGone(a);
    await fx.cluster.node(b).kill();
    const after = await fx.cluster.waitForGone(b);
    expect(after.lost).toEqual([]);
    expect(after.lostCaches).toBeUndefined();

    for (const [i, k] of keys.entries()) expect(await safe.get(k)).toBe(i);
    for (const [i, k] of keys.entries()) expect(await scratch.get(k)).toBe(ledBySurvivor(k) ? i : undefined);
    // The lost partitions take writes again.
    const lostKey = keys.find((k) => !ledBySurvivor(k))!;
    await scratch.put(lostKey, -1);
    expect(await scratch.get(lostKey)).toBe(-1);
    await safe.put(lostKey, -2);
    expect(await safe.get(lostKey)).toBe(-2);
    // Each partition the survivor did not lead was lost once for scratch, and counted there.
    expect(await ignoredLosses(survivor, 'scratch')).toBe(ranked.owners.filter((o) => o[0] !== survivor).length);
    expect(await ignoredLosses(survivor, 'safe')).toBe(0);
  }, 90_000);
});
