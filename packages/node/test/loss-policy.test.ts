import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { partitionOf } from '@gridlink/affinity';
import { PartitionLostError } from '@gridlink/client';
import { MemoryControlPlane, NodeConfigError, resolveNodeOptions, type TopologyRecord } from '@gridlink/node';
import { lossRefusal, unsupportedCacheConfig } from '@gridlink/node/internal';
import { ErrorCode } from '@gridlink/protocol';
import { perTestCluster } from './helpers/grid.js';

const P = 16;

describe('partition-loss policy (pure)', () => {
  it('READ_ONLY_SAFE refuses exactly the writes made while something is lost; READ_WRITE_SAFE never refuses up front', () => {
    fc.assert(
      fc.property(fc.array(fc.nat({ max: P - 1 }), { maxLength: 4 }), fc.constantFrom(undefined, 'READ_WRITE_SAFE', 'READ_ONLY_SAFE'), fc.boolean(), (lost, policy, mutating) => {
        const t = { lost } as unknown as TopologyRecord;
        const r = lossRefusal(t, policy === undefined ? {} : { partitionLossPolicy: policy as 'READ_ONLY_SAFE' }, 'c', mutating);
        const refused = policy === 'READ_ONLY_SAFE' && mutating && lost.length > 0;
        expect(r !== null).toBe(refused);
        if (r) expect(r.code).toBe(ErrorCode.PARTITION_LOST);
      }),
    );
  });

  it('per-cache backups and IGNORE are accepted; backups beyond the bound are refused naming the field', () => {
    expect(unsupportedCacheConfig({ backups: 1 })).toBeNull();
    expect(unsupportedCacheConfig({ backups: 0, partitionLossPolicy: 'IGNORE' })).toBeNull();
    expect(unsupportedCacheConfig({ backups: 17 })?.field).toBe('backups');
    const cp = new MemoryControlPlane();
    expect(() => resolveNodeOptions({ id: 'n', controlPlane: cp, caches: { c: { backups: 99 } } })).toThrow(/caches\.c\.backups/);
    expect(() => resolveNodeOptions({ id: 'n', controlPlane: cp, caches: { c: 'x' as never } })).toThrow(NodeConfigError);
    expect(resolveNodeOptions({ id: 'n', controlPlane: cp, backups: 1, caches: { c: { partitionLossPolicy: 'IGNORE', backups: 0 } } }).caches['c']).toBeDefined();
  });
});

describe('partition-loss policy on LocalCluster (backups = 0, one node killed)', () => {
  const fx = perTestCluster();

  it('READ_WRITE_SAFE fails only lost partitions; READ_ONLY_SAFE refuses every write but serves surviving reads', async () => {
    const cluster = await fx.start({ nodes: 2, partitions: P, backups: 0, autoAdjust: { enabled: false } });
    const c = cluster;
    const client = await fx.connect({ endpoints: c.endpoints, requestTimeout: 1000, operationTimeout: 5000, heartbeatInterval: 100, heartbeatTimeout: 600 });
    const rw = client.cache<string, number>('rw');
    const ro = client.cache<string, number>('ro');
    await rw.create({ partitionLossPolicy: 'READ_WRITE_SAFE' });
    await ro.create({ partitionLossPolicy: 'READ_ONLY_SAFE' });
    await expect(client.cache('bad').create({ backups: 17 })).rejects.toThrow(/backups/);
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);
    for (const [i, k] of keys.entries()) {
      await rw.put(k, i);
      await ro.put(k, i);
    }
    const [victim, survivor] = c.nodeIds as [string, string];
    const lostKey = keys.find((k) => c.primaryOf(partitionOf(k, P)) === victim)!;
    const liveKey = keys.find((k) => c.primaryOf(partitionOf(k, P)) === survivor)!;
    await c.kill(victim);
    await c.waitForTopology((t) => t.lost.length > 0);
    await c.waitForTopology((t) => t.members[victim] === undefined);
    // READ_WRITE_SAFE
    await expect(rw.get(lostKey)).rejects.toBeInstanceOf(PartitionLostError);
    await expect(rw.put(lostKey, -1)).rejects.toBeInstanceOf(PartitionLostError);
    expect(await rw.get(liveKey)).toBe(keys.indexOf(liveKey));
    await rw.put(liveKey, 1000);
    expect(await rw.get(liveKey)).toBe(1000);
    // READ_ONLY_SAFE
    expect(await ro.get(liveKey)).toBe(keys.indexOf(liveKey));
    await expect(ro.put(liveKey, -1)).rejects.toBeInstanceOf(PartitionLostError);
    await expect(ro.remove(liveKey)).rejects.toBeInstanceOf(PartitionLostError);
    await expect(ro.get(lostKey)).rejects.toBeInstanceOf(PartitionLostError);
    expect(await ro.get(liveKey)).toBe(keys.indexOf(liveKey));
    // Accepting the loss makes the cache writable again.
    await c.resetLostPartitions();
    await c.waitForTopology((t) => t.lost.length === 0);
    await ro.put(liveKey, 7);
    expect(await ro.get(liveKey)).toBe(7);
  }, 30_000);
});
