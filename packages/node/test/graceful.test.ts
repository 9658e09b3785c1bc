import { describe, expect, it } from 'vitest';
import { bytesSerializer } from '@gridlink/client';
import { nextTopology, initialTopology } from '@gridlink/node/internal';
import type { LeaseRecord } from '@gridlink/node';
import fc from 'fast-check';
import { WriteStream } from './helpers/workload.js';
import { perTestCluster } from './helpers/grid.js';

const P = 32;

const lease = (id: string, extra: Partial<LeaseRecord> = {}): LeaseRecord => ({ id, epoch: `${id}-e`, host: '127.0.0.1', port: 1, synced: {}, ...extra });

describe('graceful stop: the leaving flag in nextTopology', () => {
  it('moves primaryship off a leaving node to a caught-up owner, keeping it as the last owner', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 5 }), fc.integer({ min: 1, max: 2 }), fc.nat(), (n, backups, pick) => {
        const ids = Array.from({ length: n }, (_, i) => `n${i}`);
        const t0 = initialTopology({ clusterId: 'c', partitions: 16, backups, leases: ids.map((id) => lease(id)) });
        const leaving = ids[pick % n]!;
        const t1 = nextTopology(t0, ids.map((id) => lease(id, id === leaving ? { leaving: true } : {})), 0);
        const after = t1 ?? t0;
        for (let p = 0; p < 16; p++) {
          const before = t0.owners[p]!;
          const o = after.owners[p]!;
          // same holders: nothing is dropped or added by the flag
          expect([...o].sort()).toEqual([...before].sort());
          if (before.length > 1 && before.includes(leaving)) expect(o[0]).not.toBe(leaving);
          if (before.length === 1) expect(o).toEqual(before);
        }
      }),
    );
  });
});

describe('graceful stop on LocalCluster', () => {
  const fx = perTestCluster();

  it('rolling restart of every node under 16-way load: no failed operation, no lost acknowledged write', async () => {
    const cluster = await fx.start({ nodes: 3, partitions: P, backups: 1, autoAdjust: { enabled: false } });
    const c = cluster;
    const client = await fx.connectFast(c.endpoints, { requestTimeout: 1000, operationTimeout: 20_000 });
    const cache = client.cache<string, Uint8Array>('roll', { serializer: bytesSerializer });
    const keys = Array.from({ length: 16 }, (_, i) => `k-${i}`);
    const stream = new WriteStream(cache, keys);
    try {
      await stream.waitForAcks(keys, 0, 64);
      for (const id of [...c.nodeIds]) {
        const node = c.node(id);
        const primariesBefore = node.partitionCounts().primary;
        expect(primariesBefore).toBeGreaterThan(0);
        const stopping = node.stop();
        // While it hands off it still holds a lease: the topology shows it primary of nothing.
        await c.waitForTopology((t) => t.owners.every((o) => o[0] !== id || o.length === 1));
        await stopping;
        expect(node.lastHandoffMs).toBeGreaterThan(0);
        await c.restart(id);
        await c.waitForStable(20_000);
        await stream.waitForAcks(keys, Date.now(), 32);
      }
    } finally {
      await stream.stop();
    }
    expect(stream.failures).toEqual([]);
    await stream.verify(cache);
  }, 60_000);

  it('with nobody to hand to (backups = 0) the stop does not wait', async () => {
    const cluster = await fx.start({ nodes: 2, partitions: 8, backups: 0, autoAdjust: { enabled: false }, handoffTimeoutMs: 10_000 });
    const node = cluster.node(cluster.nodeIds[1]!);
    expect(node.partitionCounts().primary).toBeGreaterThan(0);
    await node.stop();
    expect(node.running).toBe(false);
    expect(node.lastHandoffMs).toBeLessThan(10_000);
  });

  it('a stop whose handoff cannot complete (the coordinator is frozen) ends at handoffTimeoutMs', async () => {
    const cluster = await fx.start({ nodes: 2, partitions: 8, backups: 1, autoAdjust: { enabled: false }, handoffTimeoutMs: 300 });
    const c = cluster;
    await c.waitForStable();
    const [coordinator, leaving] = c.nodeIds as [string, string];
    const node = c.node(leaving);
    expect(node.partitionCounts().primary).toBeGreaterThan(0);
    const versionBefore = c.topologyVersion;
    c.hang(coordinator);
    await node.stop();
    expect(node.running).toBe(false);
    expect(node.lastHandoffMs).toBeGreaterThanOrEqual(300);
    // Nobody moved its primaryships: they fail over as after a kill once the coordinator is back.
    expect(c.topologyVersion).toBe(versionBefore);
    c.resume(coordinator);
    await c.waitForTopology((t) => t.members[leaving] === undefined && t.owners.every((o) => o[0] === coordinator));
  });
});
