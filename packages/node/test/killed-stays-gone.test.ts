/**
 * A killed node never comes back as a member (it stopped renewing: only a restart, with a new
 * epoch, may bring its id back). Seen once in the dashboard test: after `kill('node-2')` and the
 * topology that dropped it, a newer record listed node-2 again. Here the same cluster shape, every
 * topology record after the kill is recorded from the control plane's watch, and the coordinator
 * is made to lose time after the drop the way a loaded machine makes it: the whole process
 * stalls (a synchronous block), or the coordinator's node alone is frozen and resumed.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { GridClient } from '@gridlink/client';
import { LEASE_PREFIX, LocalCluster, TOPOLOGY_KEY, type KvEvent, type TopologyRecord } from '@gridlink/node';
import { isSettled } from '../src/control/topology.js';
import { connectClient } from './helpers/grid.js';

/** Blocks this process's event loop for `ms` (a GC pause or a starved CPU, as a fault). */
function stallProcess(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    // busy: nothing else in this process runs meanwhile
  }
}

/** Resolves after `count` further renewals of `id`'s lease have been written. */
function renewals(cluster: LocalCluster, id: string, count: number): Promise<void> {
  return new Promise((resolve) => {
    let n = 0;
    const unwatch = cluster.controlPlane.watch(LEASE_PREFIX + id, (e: KvEvent<unknown>) => {
      if (e.type !== 'put' || ++n < count) return;
      unwatch();
      resolve();
    });
  });
}

describe('a killed node stays gone', () => {
  let cluster: LocalCluster | undefined;
  let client: GridClient | undefined;
  let load: NodeJS.Timeout | undefined;
  let unwatch: (() => void) | undefined;
  afterEach(async () => {
    clearInterval(load);
    unwatch?.();
    await client?.close();
    client = undefined;
    await cluster?.stop();
    cluster = undefined;
  });

  let leaseWrites = 0;

  async function killAndDrop(): Promise<{ c: LocalCluster; records: TopologyRecord[] }> {
    leaseWrites = 0;
    const c = await LocalCluster.start({ nodes: 3, partitions: 128, backups: 1, autoAdjust: { enabled: false }, zones: ['zone-a', 'zone-b', 'zone-c'] });
    cluster = c;
    client = await connectClient(c.endpoints);
    const cache = client.cache<string, number>('demo');
    let i = 0;
    load = setInterval(() => {
      for (let k = 0; k < 20; k++) void cache.put(`k${i++ % 500}`, i).catch(() => undefined);
    }, 50);
    const records: TopologyRecord[] = [];
    unwatch = c.controlPlane.watch<TopologyRecord>(TOPOLOGY_KEY, (e) => {
      if (e.type === 'put') records.push(e.value);
    });
    await c.kill('node-2');
    // A killed node writes nothing any more (no timer of it survives the kill).
    const stray = c.controlPlane.watch(LEASE_PREFIX + 'node-2', () => leaseWrites++);
    const prevUnwatch = unwatch;
    unwatch = () => {
      prevUnwatch?.();
      stray();
    };
    await c.waitForTopology((t) => t.members['node-2'] === undefined && isSettled(t) && t.owners.every((o) => !o.includes('node-2')), 15_000);
    return { c, records };
  }

  /** Records after the first one that dropped node-2 which list it again. */
  function resurrections(records: TopologyRecord[]): number[] {
    const dropped = records.findIndex((t) => t.members['node-2'] === undefined);
    expect(dropped).toBeGreaterThanOrEqual(0);
    return records.slice(dropped).filter((t) => t.members['node-2'] !== undefined).map((t) => t.version);
  }

  it('through a stall of the whole process after the drop', async () => {
    const { c, records } = await killAndDrop();
    // Longer than 1.5 renewal intervals (the coordinator then counts every lease afresh), shorter
    // than a lease (a longer one lapses the coordinator's own lease: it writes nothing for a while).
    stallProcess(400);
    // More than a lease's worth of the coordinator's renewals: a revived lease is written within
    // a tick or two.
    await renewals(c, 'node-1', 6);
    expect(resurrections(records)).toEqual([]);
    expect(leaseWrites).toBe(0);
    expect(c.topology().members['node-2']).toBeUndefined();
  });

  it('through the coordinator frozen for a moment after the drop', async () => {
    const { c, records } = await killAndDrop();
    // node-1 (the coordinator: lowest id) misses two renewals, not enough to be declared gone.
    c.hang('node-1');
    await renewals(c, 'node-3', 2);
    c.resume('node-1');
    await renewals(c, 'node-1', 6);
    expect(resurrections(records)).toEqual([]);
    expect(leaseWrites).toBe(0);
    expect(c.topology().members['node-2']).toBeUndefined();
  });
});
