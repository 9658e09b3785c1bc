import { afterEach, describe, expect, it } from 'vitest';
import { partitionOf } from '@gridlink/affinity';
import { PushKind } from '@gridlink/protocol';
import type { GridClient } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { TestConnection } from './helpers/client.js';
import { connectClient } from './helpers/grid.js';

describe('failover', () => {
  let cluster: LocalCluster | undefined;
  let client: GridClient | undefined;
  let watcher: TestConnection | undefined;
  afterEach(async () => {
    await client?.close();
    client = undefined;
    watcher?.close();
    watcher = undefined;
    await cluster?.stop();
    cluster = undefined;
  });

  it('a killed primary: backups take over, acknowledged writes survive, clients get pushed', async () => {
    cluster = await LocalCluster.start({ nodes: 3, backups: 1, partitions: 32 });
    const c = cluster;
    client = await connectClient(c.endpoints);
    const cache = client.cache<string, string>('c');
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);
    for (const k of keys) await cache.put(k, k);
    const victim = c.primaryOf(partitionOf('k0', 32))!;
    const survivor = c.nodeIds.find((id) => id !== victim)!;
    // Pushes are observed on the wire: the real client consumes them itself.
    const w = await TestConnection.connect(c.endpointOf(survivor));
    watcher = w;
    const v0 = c.topologyVersion;
    const t0 = Date.now();
    await c.kill(victim);
    await cache.put('k0', 'after');
    const pause = Date.now() - t0;
    expect(c.primaryOf(partitionOf('k0', 32))).not.toBe(victim);
    for (const k of keys.slice(1)) expect(await cache.get(k)).toBe(k);
    expect(await cache.get('k0')).toBe('after');
    expect(w.pushes.some((p) => p.push === PushKind.TOPOLOGY_CHANGED && p.topologyVersion > v0)).toBe(true);
    expect(pause).toBeGreaterThan(0);
  });
});
