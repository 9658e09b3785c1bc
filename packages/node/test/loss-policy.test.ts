import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { partitionOf } from '@gridlink/affinity';
import { PartitionLostError } from '@gridlink/client';
import { MemoryControlPlane, NodeConfigError, resolveNodeOptions, type TopologyRecord } from '@gridlink/node';
import { lossRefusal, unsupportedCacheConfig } from '@gridlink/node/internal';
import { ErrorCode } from '@gridlink/protocol';
import { waitFor } from '@gridlink/testkit';
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

describe('IGNORE and per-cache losses on LocalCluster', () => {
  const fx = perTestCluster();

  it('a lost partition is served again at once, empty, for IGNORE caches and counted; other caches on it keep their policy', async () => {
    const c = await fx.start({ nodes: 2, partitions: P, backups: 0, autoAdjust: { enabled: false } });
    const client = await fx.connect({ endpoints: c.endpoints, requestTimeout: 1000, operationTimeout: 5000, heartbeatInterval: 100, heartbeatTimeout: 600 });
    const ign = client.cache<string, number>('ign');
    const rw = client.cache<string, number>('rw');
    const ro = client.cache<string, number>('ro');
    await ign.create({ partitionLossPolicy: 'IGNORE' });
    await rw.create({ partitionLossPolicy: 'READ_WRITE_SAFE' });
    await ro.create({ partitionLossPolicy: 'READ_ONLY_SAFE' });
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);
    for (const [i, k] of keys.entries()) {
      await ign.put(k, i);
      await rw.put(k, i);
      await ro.put(k, i);
    }
    const [victim, survivor] = c.nodeIds as [string, string];
    const led = c.topology().owners.filter((o) => o[0] === victim).length;
    const lostKey = keys.find((k) => c.primaryOf(partitionOf(k, P)) === victim)!;
    const liveKey = keys.find((k) => c.primaryOf(partitionOf(k, P)) === survivor)!;
    await c.kill(victim);
    const t = await c.waitForTopology((x) => x.members[victim] === undefined && x.lost.length > 0);
    expect(t.lost).toHaveLength(led);
    // The lost partitions have fresh owners (the survivor) and stay lost for the other caches.
    for (const p of t.lost) expect(t.owners[p]).toEqual([survivor]);
    expect(await ign.get(lostKey)).toBeUndefined();
    await ign.put(lostKey, 5);
    expect(await ign.get(lostKey)).toBe(5);
    expect(await ign.get(liveKey)).toBe(keys.indexOf(liveKey));
    await expect(rw.get(lostKey)).rejects.toBeInstanceOf(PartitionLostError);
    await expect(rw.put(lostKey, 1)).rejects.toBeInstanceOf(PartitionLostError);
    expect(await rw.get(liveKey)).toBe(keys.indexOf(liveKey));
    await expect(ro.put(liveKey, 1)).rejects.toBeInstanceOf(PartitionLostError);
    expect(await ro.get(liveKey)).toBe(keys.indexOf(liveKey));
    const counted = (await c.node(survivor).metrics.lossesIgnored.get()).values.find((v) => v.labels['cache'] === 'ign')?.value;
    expect(counted).toBe(led);
    // Accepting the loss keeps what the IGNORE cache wrote meanwhile; the others start empty there.
    await c.resetLostPartitions();
    await c.waitForTopology((x) => x.lost.length === 0);
    expect(await ign.get(lostKey)).toBe(5);
    expect(await rw.get(lostKey)).toBeUndefined();
    await ro.put(liveKey, 7);
    expect(await ro.get(liveKey)).toBe(7);
  }, 30_000);

  it('a backups=0 cache in a cluster with one backup is lost alone where its primary died; the cluster\u2019s caches lose nothing', async () => {
    const c = await fx.start({ nodes: 2, partitions: P, backups: 1, autoAdjust: { enabled: false } });
    const client = await fx.connect({ endpoints: c.endpoints, requestTimeout: 1000, operationTimeout: 5000, heartbeatInterval: 100, heartbeatTimeout: 600 });
    const thin = client.cache<string, number>('thin');
    const ro = client.cache<string, number>('thin-ro');
    const full = client.cache<string, number>('full');
    await thin.create({ backups: 0 });
    await ro.create({ backups: 0, partitionLossPolicy: 'READ_ONLY_SAFE' });
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);
    for (const [i, k] of keys.entries()) {
      await thin.put(k, i);
      await ro.put(k, i);
      await full.put(k, i);
    }
    const [victim, survivor] = c.nodeIds as [string, string];
    // thin keeps no copy on the backup.
    expect(c.node(survivor).store.localSize('thin') + c.node(victim).store.localSize('thin')).toBe(keys.length);
    const lostKey = keys.find((k) => c.primaryOf(partitionOf(k, P)) === victim)!;
    const liveKey = keys.find((k) => c.primaryOf(partitionOf(k, P)) === survivor)!;
    const led = c.topology().owners.flatMap((o, p) => (o[0] === victim ? [p] : []));
    await c.kill(victim);
    const t = await c.waitForTopology((x) => x.members[victim] === undefined);
    expect(t.lost).toEqual([]);
    expect(t.lostCaches).toEqual({ thin: led, 'thin-ro': led });
    for (const [i, k] of keys.entries()) expect(await full.get(k)).toBe(i);
    await expect(thin.get(lostKey)).rejects.toBeInstanceOf(PartitionLostError);
    await expect(thin.put(lostKey, 1)).rejects.toBeInstanceOf(PartitionLostError);
    expect(await thin.get(liveKey)).toBe(keys.indexOf(liveKey));
    await thin.put(liveKey, 100);
    await expect(ro.put(liveKey, 1)).rejects.toBeInstanceOf(PartitionLostError);
    expect(await ro.get(liveKey)).toBe(keys.indexOf(liveKey));
    await c.resetLostPartitions();
    const reset = await c.waitForTopology((x) => x.lostCaches === undefined);
    expect(reset.lost).toEqual([]);
    expect(await thin.get(lostKey)).toBeUndefined();
    await thin.put(lostKey, 3);
    expect(await thin.get(lostKey)).toBe(3);
    await ro.put(liveKey, 9);
  }, 30_000);
});

describe('IGNORE losses of implicit caches (LocalCluster)', () => {
  const fx = perTestCluster();

  it('are counted under one metric label, however many cache names the app made up', async () => {
    const c = await fx.start({ nodes: 2, partitions: P, backups: 0, autoAdjust: { enabled: false }, cacheDefaults: { partitionLossPolicy: 'IGNORE' } });
    const client = await fx.connect({ endpoints: c.endpoints, requestTimeout: 1000, operationTimeout: 5000, heartbeatInterval: 100, heartbeatTimeout: 600 });
    const [victim, survivor] = c.nodeIds as [string, string];
    // Per-tenant cache names, each with a key on every partition.
    for (let t = 0; t < 20; t++) {
      const cache = client.cache<string, number>(`tenant-${t}`);
      for (let i = 0; i < 3 * P; i++) await cache.put(`k${i}`, i);
    }
    await c.kill(victim);
    await c.waitForTopology((x) => x.members[victim] === undefined && x.lost.length > 0);
    await c.waitForTopology((x) => x.lost.every((p) => x.owners[p]?.[0] === survivor));
    await waitFor('the losses counted', async () => (await c.node(survivor).metrics.lossesIgnored.get()).values.length > 0, 10_000);
    const values = (await c.node(survivor).metrics.lossesIgnored.get()).values;
    expect(values.map((v) => v.labels['cache'])).toEqual(['(implicit)']);
    expect(values[0]!.value).toBeGreaterThan(0);
    // Served again, empty, as before.
    const lostKey = Array.from({ length: 3 * P }, (_, i) => `k${i}`).find((k) => c.topology().lost.includes(partitionOf(k, P)))!;
    expect(await client.cache<string, number>('tenant-0').get(lostKey)).toBeUndefined();
  }, 30_000);
});
